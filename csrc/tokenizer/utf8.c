/* UTF-8 validation and the two Unicode character classes the added-token matcher needs. */
#include "tokenizer.h"

int nt_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint32_t min;
        if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
        else return 0;
        if (i + (size_t)len > n) return 0;
        uint32_t cp = c & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += (size_t)len;
    }
    return 1;
}

uint32_t nt_utf8_decode(const char *s, int len) {
    const unsigned char *p = (const unsigned char *)s;
    if (len == 1) return p[0];
    uint32_t cp = p[0] & (0x7F >> len);
    for (int k = 1; k < len; k++) cp = cp << 6 | (p[k] & 0x3F);
    return cp;
}

int nt_unicode_is_whitespace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

int nt_unicode_is_alphanumeric(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
    /* Outside ASCII: punctuation, symbols and spaces of the common blocks are not word characters;
     * everything else (letters of every script, CJK, digits) is. */
    if (nt_unicode_is_whitespace(cp)) return 0;
    if (cp <= 0xBF) return cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 || cp == 0xBA ||
                           (cp >= 0xBC && cp <= 0xBE);
    if (cp == 0xD7 || cp == 0xF7) return 0;
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0;  /* punctuation, symbols, arrows, math, boxes */
    if (cp >= 0x3000 && cp <= 0x303F) return 0;  /* CJK punctuation */
    if (cp >= 0xFE30 && cp <= 0xFE4F) return 0;
    if (cp >= 0xFF00 && cp <= 0xFF0F) return 0;
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return 0; /* emoji and pictographs */
    if (cp >= 0x0300 && cp <= 0x036F) return 0;  /* combining marks */
    return 1;
}

"""The dtypes a checkpoint may store, named as safetensors names them (every reader maps its own names to these)."""

# Stored dtypes: name in safetensors -> (bytes per element, core dtype name or None if unsupported)
SAFETENSORS_DTYPES = {
    "F32": (4, "float32"),
    "BF16": (2, "bfloat16"),
    "F16": (2, "float16"),
    "F64": (8, None),
    "I64": (8, None),
    "I32": (4, None),
    "I16": (2, None),
    "I8": (1, None),
    "U64": (8, None),
    "U32": (4, None),
    "U16": (2, None),
    "U8": (1, None),
    "BOOL": (1, None),
    "F8_E4M3": (1, None),
    "F8_E5M2": (1, None),
    "F8_E8M0": (1, None),
    "F4": (None, None),
    "F6_E2M3": (None, None),
    "F6_E3M2": (None, None),
    "C64": (8, None),
}

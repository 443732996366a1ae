"""Ctrl-C in a child process: the long calls of the core must stop and leave the model usable."""
import signal
import subprocess
import sys
import time


def interrupt_child(script):
    """Runs `script` in a child Python that prints "ready" before a long call, "interrupted ..." when the call
    raises KeyboardInterrupt, then "usable" if the model still gives its earlier results. Sends SIGINT 1.5 s after
    "ready" and checks that KeyboardInterrupt came within 5 s and the model is usable."""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        sent = time.time()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        latency = time.time() - sent
        assert line.startswith("interrupted"), line + child.stderr.read()
        assert latency < 5.0, f"KeyboardInterrupt came {latency:.1f} s after SIGINT"
        assert child.stdout.readline().strip() == "usable"
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()

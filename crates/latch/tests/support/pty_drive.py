#!/usr/bin/env python3
"""Drives an interactive program under a real pseudo-terminal, as a person
would: waits for text, types, waits again. Used by the gateway tests.

usage: pty_drive.py COLS ROWS SCRIPT_JSON -- PROGRAM ARGS...
SCRIPT_JSON is a list of ["expect", text] / ["send", text] steps.
Prints everything the program wrote; exits 0 when the script ran to the end
and the program exited, 1 (with what was seen) on a timeout."""
import fcntl, json, os, pty, select, struct, sys, termios, time

cols, rows, script = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
argv = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.execvp(argv[0], argv)

seen = b""
def read_some(timeout):
    global seen
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return True
    try:
        data = os.read(fd, 65536)
    except OSError:
        return False
    if not data:
        return False
    seen += data
    return True

for kind, text in script:
    if kind == "send":
        os.write(fd, text.encode())
        continue
    deadline = time.time() + 20
    while text.encode() not in seen:
        if time.time() > deadline or not read_some(0.2):
            if text.encode() in seen:
                break
            sys.stdout.write(seen.decode(errors="replace"))
            sys.stderr.write("\ntimed out waiting for %r\n" % text)
            sys.exit(1)
deadline = time.time() + 20
while time.time() < deadline and read_some(0.2):
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(0 if os.WIFEXITED(status) else 1)

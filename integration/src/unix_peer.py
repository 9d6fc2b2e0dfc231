# Both sides of tests/unix_sockets.rs. An address is a path, or "@name" for an abstract
# socket (the manifest's spelling).
#   serve KIND:ADDR...   bind each (KIND stream or dgram), print "ready", then answer every
#                        stream connection with "hello" and print "dgram PAYLOAD" for
#                        every datagram, until killed.
#   OP ARGS...           the client: each argument is one operation "NAME ARG...", each
#                        prints one line, "ok ..." or an errno name ("EPERM").
import errno, os, selectors, socket, sys

TIMEOUT = 5.0


def addr(a):
    return "\0" + a[1:] if a.startswith("@") else a


def serve(specs):
    sel = selectors.DefaultSelector()
    for spec in specs:
        kind, a = spec.split(":", 1)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if kind == "stream" else socket.SOCK_DGRAM)
        s.bind(addr(a))
        if kind == "stream":
            s.listen(16)
        sel.register(s, selectors.EVENT_READ, kind)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "stream":
                c, _ = key.fileobj.accept()
                c.sendall(b"hello\n")
                c.close()
            else:
                data = key.fileobj.recv(4096)
                print("dgram " + data.decode(), flush=True)


def op_stream(a):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(addr(a))
        return "ok " + s.recv(64).decode().strip()
    finally:
        s.close()


def op_dgram(a, *payloads):
    # Every payload from one socket: the kernel logs an allowed name once per socket.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for p in payloads:
            s.sendto(p.encode(), addr(a))
        return "ok"
    finally:
        s.close()


def op_dgram_connect(a, payload):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(addr(a))
        s.send(payload.encode())
        return "ok"
    finally:
        s.close()


def op_pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    x, y = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.sendall(b"ping")
    x.send(b"pong")
    out = "ok " + b.recv(4).decode() + " " + y.recv(4).decode()
    for s in (a, b, x, y):
        s.close()
    return out


def op_own(a):
    # A listener of this process, then a connection to it by its name.
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(addr(a))
    srv.listen(1)
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(TIMEOUT)
        try:
            c.connect(addr(a))
            peer, _ = srv.accept()
            peer.sendall(b"mine\n")
            return "ok " + c.recv(64).decode().strip()
        finally:
            c.close()
    finally:
        srv.close()
        if not a.startswith("@"):
            os.unlink(a)


def main(argv):
    if argv and argv[0] == "serve":
        return serve(argv[1:])
    for spec in argv:
        name, *args = spec.split(" ")
        try:
            line = globals()["op_" + name](*args)
        except socket.timeout:
            line = "timeout"
        except OSError as e:
            line = errno.errorcode.get(e.errno, str(e.errno))
        print(line, flush=True)


main(sys.argv[1:])

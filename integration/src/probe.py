# cork integration probe: the agent's side of a test. Each argument is one operation,
# "NAME ARG...", run in order; each prints exactly one line: "ok", an errno name
# ("EPERM"), "timeout", or the text the operation reports.
import errno, os, socket, sys, time

TIMEOUT = 5.0
MSG_FASTOPEN = 0x20000000
held = []
last_port = [0]


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def port(p):
    return last_port[0] if p == "@" else int(p)


def op_tcp(addr, p):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect((addr, port(p)))
    finally:
        s.close()
    return "ok"


def op_tcp_fastopen(addr, p):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.sendto(b"fastopen", MSG_FASTOPEN, (addr, port(p)))
    finally:
        s.close()
    return "ok"


def op_udp_sendto(addr, p, payload):
    with socket.socket(fam(addr), socket.SOCK_DGRAM) as s:
        s.sendto(payload.encode(), (addr, port(p)))
    return "ok"


def op_udp_sendmsg(addr, p, payload):
    with socket.socket(fam(addr), socket.SOCK_DGRAM) as s:
        s.sendmsg([payload.encode()], [], 0, (addr, port(p)))
    return "ok"


def op_udp_connect(addr, p, payload):
    with socket.socket(fam(addr), socket.SOCK_DGRAM) as s:
        s.connect((addr, port(p)))
        s.send(payload.encode())
    return "ok"


def op_socket(family, kind, proto):
    f = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "packet": socket.AF_PACKET}[family]
    k = {"raw": socket.SOCK_RAW, "dgram": socket.SOCK_DGRAM, "stream": socket.SOCK_STREAM}[kind]
    p = {"icmp": socket.IPPROTO_ICMP, "icmpv6": socket.IPPROTO_ICMPV6,
         "udp": socket.IPPROTO_UDP, "tcp": socket.IPPROTO_TCP,
         "mptcp": 262, "sctp": 132, "all": socket.htons(0x0003)}[proto]
    socket.socket(f, k, p).close()
    return "ok"


def op_listen(addr, p):
    s = socket.socket(fam(addr), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(p)))
    s.listen(64)
    held.append(s)
    last_port[0] = s.getsockname()[1]
    return "ok %d" % last_port[0]


def op_say(*words):
    return " ".join(words)


def op_write(path, text):
    with open(path, "w") as f:
        f.write(text.replace("$PID", str(os.getpid())))
    return "ok"


def op_rewrite(path):
    # Writes a file's own content back: a no-op wherever the write is allowed at all.
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text)
    return "ok"


def op_read(path):
    with open(path) as f:
        return f.read().strip().replace("\n", ";")


def op_wait_file(path, seconds="30"):
    deadline = time.monotonic() + float(seconds)
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(0.02)
    return "ok"


def op_loop(out, addr, p, seconds):
    # Keeps trying one connect every 50 ms, appending "N RESULT" lines to `out`.
    deadline = time.monotonic() + float(seconds)
    n = 0
    while time.monotonic() < deadline:
        n += 1
        r = run_one(["tcp", addr, p])
        with open(out, "a") as f:
            f.write("%d %s\n" % (n, r))
        time.sleep(0.05)
    return "ok"


def op_status():
    # CapEff, CapBnd, NoNewPrivs from /proc/self/status, as "Key=value" words.
    keep = ("CapEff", "CapBnd", "CapPrm", "NoNewPrivs")
    out = []
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keep:
                out.append("%s=%s" % (k, v.strip()))
    return " ".join(out)


def run_one(words):
    fn = globals().get("op_" + words[0].replace("-", "_"))
    if fn is None:
        return "bad-op:" + words[0]
    try:
        return fn(*words[1:])
    except socket.timeout:
        return "timeout"
    except OSError as e:
        if e.errno is None:
            return "error:" + str(e).replace(" ", "_")
        return errno.errorcode.get(e.errno, "errno%d" % e.errno)


for arg in sys.argv[1:]:
    print(run_one(arg.split()), flush=True)

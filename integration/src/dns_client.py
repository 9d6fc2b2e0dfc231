# A tiny DNS client for the bottle side of DNS tests: one line of output per operation.
#   udp|tcp SERVER NAME TYPE  -> "RCODE ip,ip... from=ADDR"   (from: the reply's source;
#                                HTTPS/SVCB records show as "svcb:<param keys>", e.g. svcb:1,5)
#   connect IP PORT           -> "ok" or the errno name
#   sleep SECONDS             -> "slept"
#   waitfile PATH             -> "go" once PATH exists, "timeout" after 60 s (a go-file:
#                                holds the bottle until the test says so)
#   udpconn IP PORT           -> "ok" or errno: a connected UDP socket, kept for udpsend
#   udpsend PAYLOAD           -> "ok" or errno: send on the last udpconn socket
#   sendto IP PORT PAYLOAD    -> "ok" or errno: from a new, unconnected socket
# Addresses are checked against the test ranges by the Rust side that builds argv.
import errno, os, socket, struct, sys, time

TYPES = {"A": 1, "AAAA": 28, "TXT": 16, "HTTPS": 65, "ANY": 255}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def query(name, qtype):
    hdr = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
    return hdr + qname + struct.pack(">HH", TYPES[qtype], 1)


def skip_name(msg, i):
    while True:
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += n + 1


def svc_keys(rdata):
    # SvcPriority, TargetName (uncompressed), then (key, length, value) parameters.
    i = skip_name(rdata, 2)
    keys = []
    while i + 4 <= len(rdata):
        key, length = struct.unpack(">HH", rdata[i:i + 4])
        keys.append(key)
        i += 4 + length
    return keys


def parse(msg):
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    i = 12
    for _ in range(qd):
        i = skip_name(msg, i) + 4
    ips = []
    for _ in range(an):
        i = skip_name(msg, i)
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[i:i + 10])
        i += 10
        rdata = msg[i:i + rdlen]
        i += rdlen
        if rtype == 1:
            ips.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            ips.append(socket.inet_ntop(socket.AF_INET6, rdata))
        elif rtype in (64, 65):
            ips.append("svcb:" + ",".join(str(k) for k in svc_keys(rdata)))
    return RCODES.get(flags & 0xF, str(flags & 0xF)), ips


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def dns(transport, server, name, qtype):
    msg = query(name, qtype)
    try:
        if transport == "udp":
            s = socket.socket(fam(server), socket.SOCK_DGRAM)
            s.settimeout(5)
            s.sendto(msg, (server, 53))
            resp, src = s.recvfrom(4096)
        else:
            s = socket.socket(fam(server), socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((server, 53))
            s.sendall(struct.pack(">H", len(msg)) + msg)
            n = struct.unpack(">H", s.recv(2))[0]
            resp = b""
            while len(resp) < n:
                resp += s.recv(n - len(resp))
            src = s.getpeername()
    except socket.timeout:
        return "TIMEOUT"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
    rcode, ips = parse(resp)
    return "%s %s from=%s" % (rcode, ",".join(ips) or "-", src[0])


def connect(ip, port):
    s = socket.socket(fam(ip), socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((ip, int(port)))
        return "ok"
    except socket.timeout:
        return "TIMEOUT"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))


kept = []


def guarded(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))


def udpconn(ip, port):
    s = socket.socket(fam(ip), socket.SOCK_DGRAM)
    kept.append(s)
    return guarded(lambda: s.connect((ip, int(port))))


def sendto(ip, port, payload):
    s = socket.socket(fam(ip), socket.SOCK_DGRAM)
    return guarded(lambda: s.sendto(payload.encode(), (ip, int(port))))


args = sys.argv[1:]
while args:
    op = args.pop(0)
    if op in ("udp", "tcp"):
        out = dns(op, args.pop(0), args.pop(0), args.pop(0))
    elif op == "connect":
        out = connect(args.pop(0), args.pop(0))
    elif op == "udpconn":
        out = udpconn(args.pop(0), args.pop(0))
    elif op == "udpsend":
        payload = args.pop(0).encode()
        out = guarded(lambda: kept[-1].send(payload))
    elif op == "sendto":
        out = sendto(args.pop(0), args.pop(0), args.pop(0))
    elif op == "waitfile":
        path, deadline = args.pop(0), time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        out = "go" if os.path.exists(path) else "timeout"
    elif op == "sleep":
        time.sleep(float(args.pop(0)))
        out = "slept"
    else:
        out = "bad-op:" + op
    print(out, flush=True)

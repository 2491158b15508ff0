#!/usr/bin/env python3
"""Replay the attacks of docs/SECURITY.md against a real `lifeline run`.

Loopback only (127.0.0.0/8), Python 3 standard library only. Starts two
trunks (a small UAS written here), writes a configuration with `access` and
an admin token, starts the daemon, replays attacks A1-A8b, prints a
markdown table and writes it to OUT/attacks.md. Exit status 0 when no attack
succeeded, 1 when one did, 2 when the harness itself could not run. The
daemon and the trunks are stopped at the end, on error and on SIGINT or
SIGTERM too; the daemon also dies with this process (PR_SET_PDEATHSIG).

A8 and A8b forge ICMP with a raw socket and need root (CAP_NET_RAW);
without it they are skipped, which is not a failure.

    python3 tests/attacks/replay.py [--lifeline BIN] [--out DIR]

See tests/attacks/README.md.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Addresses on loopback. Linux answers the whole of 127.0.0.0/8.
CALLER_IP = "127.0.0.1"       # in access.callers, not trusted
TRUSTED_IP = "127.0.0.2"      # in access.callers and access.trusted
STRANGER_IP = "127.0.0.77"    # outside access.callers
ATTACKER_IP = "127.0.0.99"    # forges responses
TRUNK_IP = "127.0.0.1"

# Every run ends within this long after the daemon is started (the build,
# when the script does it, is not counted).
RUN_DEADLINE_S = 100

FORGED_PAI = "<tel:+441632960999>"
FORGED_RP = "esnet.0"


class Deadline(Exception):
    """The whole run took longer than RUN_DEADLINE_S."""


# --------------------------------------------------------------------------
# SIP: a small message builder and parser
# --------------------------------------------------------------------------

COMPACT = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
    "l": "content-length", "c": "content-type", "s": "subject",
}


def branch():
    return "z9hG4bK" + uuid.uuid4().hex[:16]


def new_call_id(tag):
    return "attack-%s-%s" % (tag, uuid.uuid4().hex[:12])


class Sip:
    """A parsed SIP message: first line, headers in order (as sent), body."""

    def __init__(self, raw):
        self.raw = raw
        head, sep, body = raw.partition(b"\r\n\r\n")
        self.body = body if sep else b""
        lines = head.split(b"\r\n")
        self.first = lines[0].decode("latin-1")
        self.headers = []  # (name as written, value), bytes decoded latin-1
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t") and self.headers:
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + line.strip().decode("latin-1"))
                continue
            name, _, value = line.partition(b":")
            self.headers.append((name.strip().decode("latin-1"),
                                 value.strip().decode("latin-1")))

    @staticmethod
    def try_parse(raw):
        try:
            return Sip(raw)
        except Exception:  # noqa: BLE001 - anything unreadable is "not SIP"
            return None

    @property
    def is_response(self):
        return self.first.startswith("SIP/2.0 ")

    @property
    def status(self):
        if not self.is_response:
            return None
        try:
            return int(self.first.split(" ")[1])
        except (IndexError, ValueError):
            return None

    @property
    def method(self):
        return None if self.is_response else self.first.split(" ")[0]

    def all(self, name):
        name = name.lower()
        return [v for n, v in self.headers if COMPACT.get(n.lower(), n.lower()) == name]

    def get(self, name, default=None):
        vals = self.all(name)
        return vals[0] if vals else default

    @property
    def call_id(self):
        return self.get("call-id")

    @property
    def cseq_method(self):
        c = self.get("cseq", "")
        return c.split()[-1] if c else None

    def top_branch(self):
        via = self.get("via", "")
        m = re.search(r"branch=([^;, ]+)", via)
        return m.group(1) if m else None

    def to_tag(self):
        m = re.search(r";\s*tag=([^;, >]+)", self.get("to", ""))
        return m.group(1) if m else None

    def contact_uri(self):
        c = self.get("contact", "")
        m = re.search(r"<([^>]+)>", c)
        return m.group(1) if m else c


def build(first, headers, body=b""):
    """A message: the first line, (name, value) headers in order, a body;
    Content-Length is added. Values may be str or bytes (bytes go on the
    wire as they are: a NUL, a DEL)."""
    out = [first.encode() + b"\r\n"]
    for name, value in headers:
        if isinstance(value, str):
            value = value.encode()
        out.append(name.encode() + b": " + value + b"\r\n")
    out.append(b"Content-Length: %d\r\n\r\n" % len(body))
    return b"".join(out) + body


def response_to(req, code, reason, to_tag=None, extra=()):
    """A response to `req` (RFC 3261 §8.2.6): its Vias, From, Call-ID, CSeq
    and To (with `to_tag` added if it has none), then `extra`."""
    headers = [("Via", v) for v in req.all("via")]
    to = req.get("to", "")
    if to_tag and not re.search(r";\s*tag=", to):
        to = "%s;tag=%s" % (to, to_tag)
    headers += [("From", req.get("from", "")), ("To", to),
                ("Call-ID", req.call_id or ""), ("CSeq", req.get("cseq", ""))]
    headers += list(extra)
    return build("SIP/2.0 %d %s" % (code, reason), headers)


SDP = (b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
       b"t=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
PIDF = (b'<?xml version="1.0"?>\r\n<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        b'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
        b'xmlns:gml="http://www.opengis.net/gml" entity="pres:caller@orig.example">\r\n'
        b'<tuple id="loc"><status><gp:geopriv><gp:location-info><gml:Point>'
        b'<gml:pos>51.5007 -0.1246</gml:pos></gml:Point></gp:location-info>'
        b'</gp:geopriv></status></tuple>\r\n</presence>\r\n')
BOUNDARY = "attack-boundary-1"
MULTIPART = (b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/sdp\r\n\r\n" + SDP
             + b"\r\n--" + BOUNDARY.encode()
             + b"\r\nContent-Type: application/pidf+xml\r\nContent-ID: <loc@orig.example>\r\n\r\n"
             + PIDF + b"\r\n--" + BOUNDARY.encode() + b"--\r\n")


def emergency_invite(me, gw, call_id, identity=True, extra=(), uri=None):
    """An emergency INVITE from `me` (ip, port): to 999, with (if `identity`)
    a forged P-Asserted-Identity and Resource-Priority: esnet.0, a location
    by reference and by value, an SDP: what an originating network sends."""
    uri = uri or "sip:999@%s:%d" % gw
    headers = [
        ("Via", "SIP/2.0/UDP %s:%d;branch=%s;rport" % (me[0], me[1], branch())),
        ("Max-Forwards", "70"),
        ("From", '"Caller" <sip:+441632960123@orig.example>;tag=%s' % uuid.uuid4().hex[:8]),
        ("To", "<%s>" % uri),
        ("Call-ID", call_id),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:caller@%s:%d>" % me),
    ]
    if identity:
        headers += [("P-Asserted-Identity", FORGED_PAI), ("Resource-Priority", FORGED_RP)]
    headers += [
        ("Geolocation", "<cid:loc@orig.example>"),
        ("Geolocation-Routing", "yes"),
        ("Subject", "help"),
        ("User-Agent", "lifeline-attack-replay"),
    ]
    headers += list(extra)
    headers.append(("Content-Type", "multipart/mixed;boundary=%s" % BOUNDARY))
    return build("INVITE %s SIP/2.0" % uri, headers, MULTIPART)


# --------------------------------------------------------------------------
# Trunks: a minimal UAS
# --------------------------------------------------------------------------

class Trunk:
    """A UAS on 127.0.0.1:(port from the OS). OPTIONS: 200. INVITE: 100,
    180 and 200 (To tag, Record-Route copied, a Contact: RFC 3261 §12.1.1),
    the 200 after `answer_delay` seconds. ACK: ignored. BYE: 200. CANCEL:
    200, and 487 for an INVITE not yet answered. Every datagram received is
    recorded with its source and the time."""

    def __init__(self, name):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((TRUNK_IP, 0))
        self.sock.settimeout(0.1)
        self.addr = self.sock.getsockname()
        self.tag = "%s-%s" % (name, uuid.uuid4().hex[:6])
        self.answer_delay = 0.0
        self.lock = threading.Lock()
        self.received = []   # (time, source, raw bytes)
        self.sent_final = {}  # INVITE branch -> (time, status)
        self.last_sent = {}  # INVITE branch -> bytes, for retransmissions
        self.timers = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="trunk-" + name, daemon=True)
        self.thread.start()

    def _send(self, data, to):
        try:
            self.sock.sendto(data, to)
        except OSError:
            pass

    def _run(self):
        while not self.stopping.is_set():
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                continue
            with self.lock:
                self.received.append((time.monotonic(), src, data))
            m = Sip.try_parse(data)
            if m is None or m.is_response:
                continue
            try:
                self._answer(m, src)
            except Exception as e:  # noqa: BLE001 - a trunk never dies on one message
                print("trunk %s: %r" % (self.name, e), file=sys.stderr)

    def _answer(self, m, src):
        method = m.method
        contact = [("Contact", "<sip:psap@%s:%d>" % self.addr)]
        rr = [("Record-Route", v) for v in m.all("record-route")]
        if method == "OPTIONS":
            self._send(response_to(m, 200, "OK", self.tag,
                                   [("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")]), src)
        elif method == "INVITE":
            b = m.top_branch()
            with self.lock:
                again = self.last_sent.get(b)
            if again is not None:  # a retransmission: the latest answer again
                self._send(again, src)
                return
            self._send(response_to(m, 100, "Trying"), src)
            ringing = response_to(m, 180, "Ringing", self.tag, rr + contact)
            self._send(ringing, src)
            ok = response_to(m, 200, "OK", self.tag,
                             rr + contact + [("Content-Type", "application/sdp")])
            ok = ok.replace(b"Content-Length: 0\r\n\r\n",
                            b"Content-Length: %d\r\n\r\n" % len(SDP)) + SDP
            with self.lock:
                self.last_sent[b] = ringing
            if self.answer_delay <= 0:
                self._final(b, ok, 200, src)
            else:
                t = threading.Timer(self.answer_delay, self._final, (b, ok, 200, src))
                t.daemon = True
                self.timers.append(t)
                t.start()
        elif method == "ACK":
            pass
        elif method == "BYE":
            self._send(response_to(m, 200, "OK", self.tag), src)
        elif method == "CANCEL":
            self._send(response_to(m, 200, "OK", self.tag), src)
            b = m.top_branch()
            with self.lock:
                answered = b in self.sent_final
            if not answered:
                inv = Sip(m.raw.replace(b"CANCEL", b"INVITE"))
                self._final(b, response_to(inv, 487, "Request Terminated", self.tag), 487, src)
        else:
            self._send(response_to(m, 405, "Method Not Allowed", self.tag), src)

    def _final(self, b, data, status, src):
        with self.lock:
            if b in self.sent_final:
                return
            self.sent_final[b] = (time.monotonic(), status)
            self.last_sent[b] = data
        self._send(data, src)

    def requests(self, call_id=None, method=None):
        """Requests received (parsed), optionally one call's and one method's."""
        with self.lock:
            got = list(self.received)
        out = []
        for t, src, raw in got:
            m = Sip.try_parse(raw)
            if m is None or m.is_response:
                continue
            if call_id is not None and m.call_id != call_id:
                continue
            if method is not None and m.method != method:
                continue
            out.append((t, src, m))
        return out

    def saw(self, needle):
        """Whether any datagram received holds `needle` (bytes)."""
        with self.lock:
            return any(needle in raw for _, _, raw in self.received)

    def stop(self):
        self.stopping.set()
        for t in self.timers:
            t.cancel()
        self.thread.join(timeout=2)
        self.sock.close()


# --------------------------------------------------------------------------
# Callers
# --------------------------------------------------------------------------

class Phone:
    """A UDP socket on one loopback address, talking to the gateway."""

    def __init__(self, ip, gw):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(0.05)
        self.me = self.sock.getsockname()
        self.gw = gw
        self.inbox = []  # (time, source, Sip) of everything received

    def send(self, data):
        self.sock.sendto(data, self.gw)

    def pump(self, seconds):
        """Receive for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._recv_one()

    def _recv_one(self):
        try:
            data, src = self.sock.recvfrom(65535)
        except (socket.timeout, BlockingIOError):
            return None
        except OSError:
            return None
        m = Sip.try_parse(data)
        if m is not None:
            self.inbox.append((time.monotonic(), src, m))
        return m

    def responses(self, call_id, cseq_method=None):
        return [(t, m) for t, _, m in self.inbox
                if m.is_response and m.call_id == call_id
                and (cseq_method is None or m.cseq_method == cseq_method)]

    def wait_final(self, call_id, cseq_method, timeout):
        """The first final response to `call_id`'s `cseq_method`, or None."""
        end = time.monotonic() + timeout
        while True:
            for _, m in self.responses(call_id, cseq_method):
                if m.status is not None and m.status >= 200:
                    return m
            if time.monotonic() >= end:
                return None
            self._recv_one()

    def in_dialog(self, method, cseq, invite_raw, ok):
        """A request in the dialog `ok` set up (RFC 3261 §12.2.1.1): route
        set the Record-Route reversed, target the Contact, To with its tag."""
        inv = Sip(invite_raw)
        routes = list(reversed(ok.all("record-route")))
        headers = [("Via", "SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.me[0], self.me[1], branch())),
                   ("Max-Forwards", "70")]
        if routes:
            headers.append(("Route", ", ".join(routes)))
        headers += [("From", inv.get("from")), ("To", ok.get("to")),
                    ("Call-ID", inv.call_id), ("CSeq", "%d %s" % (cseq, method))]
        return build("%s %s SIP/2.0" % (method, ok.contact_uri() or inv.first.split(" ")[1]),
                     headers)

    def ack_for(self, invite_raw, final):
        """The ACK of a final response: in the dialog for a 2xx, else the
        INVITE transaction's (§17.1.1.3)."""
        if 200 <= final.status < 300:
            return self.in_dialog("ACK", 1, invite_raw, final)
        inv = Sip(invite_raw)
        headers = [("Via", inv.get("via")), ("Max-Forwards", "70"),
                   ("From", inv.get("from")), ("To", final.get("to")),
                   ("Call-ID", inv.call_id), ("CSeq", "1 ACK")]
        return build("ACK %s SIP/2.0" % inv.first.split(" ")[1], headers)

    def close(self):
        self.sock.close()


def place_and_hang_up(phone, invite_raw, timeout=5.0):
    """Send the INVITE, wait for the final; ACK it; a 2xx is ended with a
    BYE (and its 200 awaited). Returns (final or None, BYE's final or None)."""
    call_id = Sip(invite_raw).call_id
    phone.send(invite_raw)
    final = phone.wait_final(call_id, "INVITE", timeout)
    if final is None:
        return None, None
    phone.send(phone.ack_for(invite_raw, final))
    if 200 <= final.status < 300:
        phone.send(phone.in_dialog("BYE", 2, invite_raw, final))
        return final, phone.wait_final(call_id, "BYE", timeout)
    return final, None


# --------------------------------------------------------------------------
# The daemon and its admin API
# --------------------------------------------------------------------------

def free_udp_port(ip="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_tcp_port(ip="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    """`lifeline run --config FILE` in a temporary directory."""

    def __init__(self, binary, trunks, out):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="lifeline-attacks-")
        os.chmod(self.dir, 0o700)
        self.sip = ("127.0.0.1", free_udp_port())
        self.admin = ("127.0.0.1", free_tcp_port())
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        self.token_file = os.path.join(self.dir, "admin.token")
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        self.config = os.path.join(self.dir, "lifeline.yaml")
        primary, backup = trunks
        with open(self.config, "w") as f:
            f.write(CONFIG.format(
                sip="%s:%d" % self.sip, admin="%s:%d" % self.admin,
                token_file=self.token_file, journal=os.path.join(self.dir, "journal"),
                caller=CALLER_IP, trusted=TRUSTED_IP,
                primary="%s:%d" % primary.addr, backup="%s:%d" % backup.addr))
        self.log_path = os.path.join(out, "lifeline.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "run", "--config", self.config],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)

    def wait_ready(self, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("lifeline exited with %s; see %s:\n%s"
                                   % (self.proc.returncode, self.log_path, self.log_text()[-3000:]))
            # Takes calls (/readyz), and its trunks answered probes (/status).
            if (self.http("GET", "/readyz")[0] == 200
                    and '"routes_usable":true' in self.http("GET", "/status", self.token)[2]):
                return
            time.sleep(0.05)
        raise RuntimeError("/readyz and /status never said ready with usable trunks; see %s"
                           % self.log_path)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def http(self, method, path, token=None, timeout=5.0):
        """(status, headers dict lower-cased, body str); status 0 if no answer."""
        try:
            s = socket.create_connection(self.admin, timeout=timeout)
        except OSError:
            return 0, {}, ""
        try:
            s.settimeout(timeout)
            auth = "Authorization: Bearer %s\r\n" % token if token is not None else ""
            s.sendall(("%s %s HTTP/1.1\r\nHost: lifeline\r\n%sContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n" % (method, path, auth)).encode())
            chunks = []
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    c = s.recv(65536)
                except socket.timeout:
                    break
                if not c:
                    break
                chunks.append(c)
        except OSError:
            return 0, {}, ""
        finally:
            s.close()
        raw = b"".join(chunks).decode("utf-8", "replace")
        head, _, body = raw.partition("\r\n\r\n")
        lines = head.split("\r\n")
        try:
            status = int(lines[0].split(" ")[1])
        except (IndexError, ValueError):
            return 0, {}, raw
        headers = {}
        for line in lines[1:]:
            n, _, v = line.partition(":")
            headers[n.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = dechunk(body)
        return status, headers, body

    def metrics_text(self):
        return self.http("GET", "/metrics")[2]

    def metrics(self):
        out = {}
        for line in self.metrics_text().splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            try:
                out[series] = float(value)
            except ValueError:
                pass
        return out

    def metric(self, series):
        return self.metrics().get(series, 0.0)

    def status(self):
        code, _, body = self.http("GET", "/status", self.token)
        if code != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def trunk_status(self, name):
        s = self.status() or {}
        for t in s.get("trunks", []):
            if t.get("name") == name:
                return t
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def die_with_parent():
    """In the child before exec: SIGKILL when this script dies, however it
    dies (Linux; best effort elsewhere)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def dechunk(body):
    out, rest = [], body
    while rest:
        size, _, rest = rest.partition("\r\n")
        try:
            n = int(size.split(";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out.append(rest[:n])
        rest = rest[n + 2:]
    return "".join(out)


CONFIG = """\
# Written by tests/attacks/replay.py.
listen:
  - udp: {sip}
admin:
  listen: {admin}
  token_file: {token_file}
journal: {journal}
emergency:
  numbers: ["999", "112", "911"]
access:
  # A trusted source must be a caller too to place calls (docs/CONFIG.md).
  callers: [{caller}/32, {trusted}/32]
  trusted: [{trusted}/32]
  unknown: drop
trunks:
  - name: primary
    address: {primary}
    transport: udp
  - name: backup
    address: {backup}
    transport: udp
routes:
  - name: emergency
    match: emergency
    trunks: [primary, backup]
  - name: default
    match: any
    trunks: [primary, backup]
log:
  level: info
"""


def wait_until(f, timeout, step=0.05):
    end = time.monotonic() + timeout
    while True:
        v = f()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

class Result:
    def __init__(self, attack, sent, expected):
        self.attack, self.sent, self.expected = attack, sent, expected
        self.observed = []
        self.failures = []
        self.skipped = False

    def see(self, text):
        self.observed.append(text)

    def check(self, ok, text):
        """Record an observation that must hold."""
        self.observed.append(text if ok else "**%s**" % text)
        if not ok:
            self.failures.append(text)
        return ok

    def skip(self, why):
        self.skipped = True
        self.observed.append(why)

    @property
    def verdict(self):
        if self.failures:
            return "FAIL"
        return "skipped" if self.skipped else "pass"


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def table(results):
    rows = ["| attack | what was sent | expected | observed | pass/fail |",
            "|---|---|---|---|---|"]
    for r in results:
        rows.append("| %s | %s | %s | %s | %s |" % (
            cell(r.attack), cell(r.sent), cell(r.expected),
            cell("; ".join(r.observed)), r.verdict))
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------
# The attacks
# --------------------------------------------------------------------------

class Env:
    def __init__(self, daemon, primary, backup):
        self.d, self.primary, self.backup = daemon, primary, backup

    @property
    def trunks(self):
        return (self.primary, self.backup)

    def invites_at_trunks(self, call_id):
        return [m for t in self.trunks for _, _, m in t.requests(call_id, "INVITE")]

    def anything_at_trunks(self, call_id):
        return [m for t in self.trunks for _, _, m in t.requests(call_id)]


ACCESS_SERIES = 'lifeline_rejected_total{reason="access"}'


def a1_stranger(env):
    r = Result("A1 caller outside `access.callers`",
               "INVITE sip:999 from %s with forged `P-Asserted-Identity: %s`, "
               "`Resource-Priority: %s`" % (STRANGER_IP, FORGED_PAI, FORGED_RP),
               "no answer (drop); no INVITE at any trunk; `%s` +1" % ACCESS_SERIES)
    before = env.d.metric(ACCESS_SERIES)
    phone = Phone(STRANGER_IP, env.d.sip)
    try:
        call_id = new_call_id("a1")
        phone.send(emergency_invite(phone.me, env.d.sip, call_id))
        phone.pump(1.5)
        answers = phone.responses(call_id)
        r.check(not answers, "%d answers%s" % (
            len(answers), "" if not answers else " (%s)" % ", ".join(m.first for _, m in answers)))
        after = wait_until(lambda: env.d.metric(ACCESS_SERIES) > before and env.d.metric(ACCESS_SERIES),
                           3.0) or env.d.metric(ACCESS_SERIES)
        r.check(after > before, "%s %g -> %g" % (ACCESS_SERIES, before, after))
        seen = env.anything_at_trunks(call_id)
        r.check(not seen, "%d requests of the call at the trunks" % len(seen))
    finally:
        phone.close()
    return r


def identity_call(env, ip, tag):
    """Place the forged-identity INVITE from `ip`; return (phone's final,
    BYE final, INVITE sent, INVITEs at the trunks)."""
    phone = Phone(ip, env.d.sip)
    try:
        call_id = new_call_id(tag)
        invite = emergency_invite(phone.me, env.d.sip, call_id)
        final, bye = place_and_hang_up(phone, invite)
        wait_until(lambda: env.invites_at_trunks(call_id), 2.0)
        return final, bye, invite, env.invites_at_trunks(call_id)
    finally:
        phone.close()


HOP_HEADERS = {"via", "max-forwards", "record-route"}


def other_headers(m, drop=()):
    drop = set(drop) | HOP_HEADERS
    return [(n, v) for n, v in m.headers if COMPACT.get(n.lower(), n.lower()) not in drop]


def a2_untrusted(env):
    r = Result("A2 caller, not trusted",
               "the A1 INVITE from %s (in `callers`, not in `trusted`): PAI, RP, "
               "Geolocation, multipart SDP + PIDF-LO" % CALLER_IP,
               "call connects; trunk gets it without P-Asserted-Identity and "
               "Resource-Priority; every other header and the body byte for byte")
    final, bye, invite, got = identity_call(env, CALLER_IP, "a2")
    r.check(final is not None and final.status == 200,
            "caller got %s" % (final.first if final else "no final"))
    r.check(bye is not None and bye.status == 200,
            "BYE got %s" % (bye.first if bye else "no final"))
    if not r.check(len(got) >= 1, "%d INVITE(s) at the trunks" % len(got)):
        return r
    m, sent = got[0], Sip(invite)
    r.check(m.get("p-asserted-identity") is None and m.get("resource-priority") is None,
            "at trunk: P-Asserted-Identity %s, Resource-Priority %s"
            % ("present" if m.get("p-asserted-identity") else "absent",
               "present" if m.get("resource-priority") else "absent"))
    want = other_headers(sent, ("p-asserted-identity", "resource-priority"))
    have = other_headers(m)
    r.check(want == have, "other headers %s" % (
        "identical, in order (Geolocation kept)" if want == have
        else "differ: sent %r, got %r" % (want, have)))
    r.check(m.body == sent.body, "body %s (%d bytes)" % (
        "identical" if m.body == sent.body else "differs", len(m.body)))
    return r


def a3_trusted(env):
    r = Result("A3 trusted source",
               "the same INVITE from %s (in `callers` and `trusted`)" % TRUSTED_IP,
               "call connects; P-Asserted-Identity and Resource-Priority kept at the trunk")
    final, _, invite, got = identity_call(env, TRUSTED_IP, "a3")
    r.check(final is not None and final.status == 200,
            "caller got %s" % (final.first if final else "no final"))
    if not r.check(len(got) >= 1, "%d INVITE(s) at the trunks" % len(got)):
        return r
    m, sent = got[0], Sip(invite)
    pai, rp = m.get("p-asserted-identity"), m.get("resource-priority")
    r.check(pai == FORGED_PAI and rp == FORGED_RP,
            "at trunk: P-Asserted-Identity %s, Resource-Priority %s" % (pai, rp))
    same = other_headers(sent) == other_headers(m) and m.body == sent.body
    r.check(same, "other headers and body %s" % ("identical" if same else "differ"))
    return r


def a4_admin(env):
    r = Result("A4 admin API without the token",
               "`POST /trunks/primary/drain` with no token and with a wrong one; "
               "`GET /calls/failed` with no token; then `GET /calls/failed` with the token",
               "401 (with `WWW-Authenticate: Bearer`), primary not drained (`GET /status`); "
               "401; 200 with the token")
    d = env.d
    code, h, _ = d.http("POST", "/trunks/primary/drain")
    r.check(code == 401 and h.get("www-authenticate", "").startswith("Bearer"),
            "drain, no token: %d (%s)" % (code, h.get("www-authenticate", "no WWW-Authenticate")))
    code, _, _ = d.http("POST", "/trunks/primary/drain", token="not-the-token-" + uuid.uuid4().hex)
    r.check(code == 401, "drain, wrong token: %d" % code)
    code, _, _ = d.http("POST", "/trunks/primary/drain", token=d.token[:-1])
    r.check(code == 401, "drain, token minus its last character: %d" % code)
    t = d.trunk_status("primary")
    drained = t.get("drained") if t else None
    r.check(drained is False, "`/status` primary drained: %s" % drained)
    if drained:  # an attack succeeded: put it back for the others
        d.http("POST", "/trunks/primary/undrain", token=d.token)
    code, _, body = d.http("GET", "/calls/failed")
    r.check(code == 401, "`/calls/failed`, no token: %d" % code)
    code, _, body = d.http("GET", "/calls/failed", token=d.token)
    r.check(code == 200, "`/calls/failed`, with the token: %d" % code)
    logged = wait_until(lambda: re.search(
        r"admin API: POST /trunks/primary/drain from 127\.0\.0\.1:\d+: 401", d.log_text()), 2.0)
    r.see("refused drains logged at WARN with the peer" if logged
          else "refused drains not found in the log")
    r.check(d.token not in d.log_text(), "token %s the log" % (
        "not in" if d.token not in d.log_text() else "FOUND in"))
    return r


REFUSED_400 = 'lifeline_messages_rejected_total{status="400",'
# The reason label of a request refused for a control character: it was
# "malformed" and is becoming "control character"; either is accepted, and
# the one seen is reported.
NUL_REASONS = ("control character", "malformed")


def refused_400(d):
    """The `lifeline_messages_rejected_total{status="400",...}` series."""
    return {k: v for k, v in d.metrics().items() if k.startswith(REFUSED_400)}


def a5_nul(env):
    r = Result("A5 NUL in a header",
               "INVITE from %s with `Subject: help<NUL>Via: SIP/2.0/UDP 203.0.113.66`" % CALLER_IP,
               "400; nothing at the trunks; `lifeline_messages_rejected_total{status=\"400\","
               "reason=...}` +1 (reason `control character`, formerly `malformed`)")
    before = refused_400(env.d)
    phone = Phone(CALLER_IP, env.d.sip)
    try:
        call_id = new_call_id("a5")
        invite = emergency_invite(phone.me, env.d.sip, call_id, identity=False,
                                  extra=[("Subject", b"help\x00Via: SIP/2.0/UDP 203.0.113.66")])
        phone.send(invite)
        final = phone.wait_final(call_id, "INVITE", 3.0)
        r.check(final is not None and final.status == 400,
                "caller got %s" % (final.first if final else "no final"))
        if final is not None:
            phone.send(phone.ack_for(invite, final))
        phone.pump(0.3)
        seen = env.anything_at_trunks(call_id)
        r.check(not seen, "%d requests of the call at the trunks" % len(seen))

        def rose():
            now = refused_400(env.d)
            return {k: (before.get(k, 0.0), v) for k, v in now.items() if v > before.get(k, 0.0)}
        grew = wait_until(rose, 3.0)
        r.check(bool(grew), "%s" % ("; ".join("%s %g -> %g" % (k, a, b) for k, (a, b) in grew.items())
                                    if grew else "no `%s...}` series rose" % REFUSED_400))
        for k in grew:
            reason = re.search(r'reason="([^"]*)"', k)
            if reason and reason.group(1) not in NUL_REASONS:
                r.see("unexpected reason label %r" % reason.group(1))
    finally:
        phone.close()
    return r


def a6_forged_dialog(env):
    r = Result("A6 forged in-dialog requests",
               "BYEs from callers: (a) a Route with our host and a forged `ll=` token; "
               "(b) a To tag of no dialog, no Route; (c) the real token of a live call from "
               "another port of %s; (d) the real token from %s (outside `callers`)"
               % (CALLER_IP, STRANGER_IP),
               "(a), (b) 481; (c) 403; (d) dropped or 403; none reaches a trunk; the real "
               "caller's BYE then ends the call")
    d = env.d
    gw = "%s:%d" % d.sip
    attacker = Phone(CALLER_IP, d.sip)
    stranger = Phone(STRANGER_IP, d.sip)
    victim = Phone(CALLER_IP, d.sip)
    try:
        def bye(phone, call_id, route=None, to_tag="dlg-" + uuid.uuid4().hex[:6]):
            headers = [("Via", "SIP/2.0/UDP %s:%d;branch=%s;rport" % (phone.me[0], phone.me[1], branch())),
                       ("Max-Forwards", "70")]
            if route:
                headers.append(("Route", route))
            headers += [("From", "<sip:+441632960123@orig.example>;tag=x1"),
                        ("To", "<sip:999@%s>;tag=%s" % (gw, to_tag)),
                        ("Call-ID", call_id), ("CSeq", "2 BYE")]
            return build("BYE sip:psap@%s:%d SIP/2.0" % env.primary.addr, headers)

        # (a) a forged token
        cid_a = new_call_id("a6a")
        attacker.send(bye(attacker, cid_a, "<sip:%s;lr;ll=0.%s>" % (gw, uuid.uuid4().hex)))
        fa = attacker.wait_final(cid_a, "BYE", 3.0)
        r.check(fa is not None and fa.status == 481, "(a) %s" % (fa.first if fa else "no answer"))
        # (b) a To tag only
        cid_b = new_call_id("a6b")
        attacker.send(bye(attacker, cid_b))
        fb = attacker.wait_final(cid_b, "BYE", 3.0)
        r.check(fb is not None and fb.status == 481, "(b) %s" % (fb.first if fb else "no answer"))

        # A live call, then its real token from others.
        cid = new_call_id("a6-live")
        invite = emergency_invite(victim.me, d.sip, cid, identity=False)
        victim.send(invite)
        ok = victim.wait_final(cid, "INVITE", 5.0)
        if not r.check(ok is not None and ok.status == 200,
                       "live call: %s" % (ok.first if ok else "no final")):
            return r
        victim.send(victim.ack_for(invite, ok))
        route = ", ".join(reversed(ok.all("record-route")))
        tag = ok.to_tag()
        attacker.send(bye(attacker, cid, route, tag))
        fc = attacker.wait_final(cid, "BYE", 3.0)
        r.check(fc is not None and fc.status == 403, "(c) %s" % (fc.first if fc else "no answer"))
        stranger.send(bye(stranger, cid, route, tag))
        stranger.pump(1.0)
        fd = [m for _, m in stranger.responses(cid, "BYE")]
        r.check(not fd or all(m.status == 403 for m in fd),
                "(d) %s" % (", ".join(m.first for m in fd) if fd else "no answer (dropped)"))
        time.sleep(0.3)
        byes = [m for t in env.trunks for _, _, m in t.requests(cid, "BYE")]
        r.check(not byes, "%d forged BYEs of the live call at the trunks" % len(byes))
        stray = env.anything_at_trunks(cid_a) + env.anything_at_trunks(cid_b)
        r.check(not stray, "%d requests of (a), (b) at the trunks" % len(stray))
        # The real caller can still end it.
        victim.send(victim.in_dialog("BYE", 2, invite, ok))
        fv = victim.wait_final(cid, "BYE", 3.0)
        r.check(fv is not None and fv.status == 200,
                "the caller's own BYE: %s" % (fv.first if fv else "no answer"))
    finally:
        attacker.close()
        stranger.close()
        victim.close()
    return r


def a7_forged_response(env):
    r = Result("A7 forged final response",
               "while an emergency call rings on primary (its 200 held 2 s), "
               "`SIP/2.0 200 OK` with the gateway's Via branch and the trunk's To tag, "
               "3 times from %s and 3 times from %s:(another port)" % (ATTACKER_IP, TRUNK_IP),
               "the caller's first 200 is the trunk's real one; nothing sent to the forger; "
               "wrong-peer counter rises")
    d, primary = env.d, env.primary
    m0 = d.metrics_text()
    series = [l.rpartition(" ")[0] for l in m0.splitlines()
              if not l.startswith("#") and ("wrong peer" in l or "wrong_peer" in l)]
    before = {s: d.metric(s) for s in series}
    caller = Phone(CALLER_IP, d.sip)
    forgers = [Phone(ATTACKER_IP, d.sip), Phone(TRUNK_IP, d.sip)]
    primary.answer_delay = 2.0
    try:
        cid = new_call_id("a7")
        invite = emergency_invite(caller.me, d.sip, cid, identity=False)
        caller.send(invite)
        at_trunk = wait_until(lambda: primary.requests(cid, "INVITE"), 3.0)
        if not r.check(bool(at_trunk), "INVITE at primary: %s" % ("yes" if at_trunk else "no")):
            return r
        gw_invite = at_trunk[0][2]
        # Let the 180 reach the caller, then forge.
        caller.pump(0.2)
        for f in forgers:
            forged = response_to(gw_invite, 200, "OK", primary.tag, [
                ("Record-Route", v) for v in gw_invite.all("record-route")] + [
                ("Contact", "<sip:attacker@%s:%d>" % f.me),
                ("X-Attack", "forged")])
            for _ in range(3):
                f.sock.sendto(forged, d.sip)
        final = caller.wait_final(cid, "INVITE", 6.0)
        sent = primary.sent_final.get(gw_invite.top_branch())
        r.check(final is not None and final.status == 200 and final.get("x-attack") is None
                and "attacker" not in (final.get("contact") or ""),
                "caller's first final: %s (%s)" % (
                    final.first if final else "none",
                    "forged" if final is not None and final.get("x-attack") else "the trunk's"))
        if final is not None and sent is not None:
            got_at = [t for t, m in caller.responses(cid, "INVITE") if m is final][0]
            r.see("it came %.2f s after the INVITE, %s the trunk's 200" % (
                got_at - at_trunk[0][0], "after" if got_at >= sent[0] else "BEFORE"))
        if final is not None and final.status < 300:
            caller.send(caller.ack_for(invite, final))
            caller.send(caller.in_dialog("BYE", 2, invite, final))
            caller.wait_final(cid, "BYE", 3.0)
        for f in forgers:
            f.pump(0.1)
        heard = sum(len(f.inbox) for f in forgers)
        r.check(heard == 0, "%d messages sent to the forgers (an ACK would mean accepted)" % heard)
        if not series:
            # Another engineer is adding it: report, do not fail.
            now = d.metrics_text()
            series = [l.rpartition(" ")[0] for l in now.splitlines()
                      if not l.startswith("#") and ("wrong peer" in l or "wrong_peer" in l)]
        if series:
            for s in series:
                after = wait_until(lambda s=s: d.metric(s) > before.get(s, 0.0) and d.metric(s), 3.0) \
                    or d.metric(s)
                r.check(after > before.get(s, 0.0), "`%s` %g -> %g" % (s, before.get(s, 0.0), after))
        else:
            r.see("no wrong-peer series in /metrics (not reported, not failed)")
    finally:
        primary.answer_delay = 0.0
        caller.close()
        for f in forgers:
            f.close()
    return r


def gateway_trunk_port(gw_sip_port, trunk_addr):
    """The local port of the gateway's UDP socket connected to `trunk_addr`,
    from /proc/net/udp (it binds next to its listener, so normally the SIP
    port)."""
    want_rem = "%s:%04X" % (ip_hex(trunk_addr[0]), trunk_addr[1])
    try:
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if remote.upper() == want_rem:
                    port = int(local.split(":")[1], 16)
                    if port == gw_sip_port:
                        return port, True
    except OSError:
        pass
    return gw_sip_port, False


def ip_hex(ip):
    """An IPv4 address as /proc/net/udp writes it (host byte order)."""
    return "%08X" % struct.unpack("=I", socket.inet_aton(ip))[0]


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def forged_port_unreachable(src_ip, dst_ip, quoted_src, quoted_dst):
    """An IP packet from `src_ip` to `dst_ip`: ICMP type 3 code 3 quoting
    the IP and UDP headers (and 8 bytes of payload) of a datagram from
    `quoted_src` to `quoted_dst` (each (ip, port))."""
    payload = b"OPTIONS "
    udp = struct.pack("!HHHH", quoted_src[1], quoted_dst[1], 8 + len(payload), 0) + payload
    qip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x1234, 0x4000, 64,
                      socket.IPPROTO_UDP, 0, socket.inet_aton(quoted_src[0]),
                      socket.inet_aton(quoted_dst[0]))
    qip = qip[:10] + struct.pack("!H", checksum(qip)) + qip[12:]
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + qip + udp
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64,
                     socket.IPPROTO_ICMP, 0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    return ip + icmp


def icmp_flood_with_calls(r, env, victims, calls=30, rate=10.0, icmp_every=0.005, icmp_for=3.0):
    """Forge ICMP port unreachable for the gateway's socket to each trunk in
    `victims`, one per trunk every `icmp_every` s for `icmp_for` s, while
    `calls` emergency calls are placed at `rate`/s; record in `r` what
    happened to the calls and the trunks."""
    d = env.d
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        r.skip("skipped: raw sockets need root (CAP_NET_RAW)")
        return r
    except OSError as e:
        r.skip("skipped: no raw socket (%s)" % e)
        return r
    names = [t.name for t in env.trunks]
    # Start from a steady state: every trunk up (an earlier flood may have
    # left one down or recovering for a probe interval or two).
    wait_until(lambda: all((d.trunk_status(n) or {}).get("state") == "up" for n in names), 5.0)
    packets = []
    for trunk in victims:
        src_port, found = gateway_trunk_port(d.sip[1], trunk.addr)
        r.see("gateway's socket to %s: 127.0.0.1:%d (%s)" % (
            trunk.name, src_port, "found in /proc/net/udp" if found else "assumed: the SIP port"))
        packets.append(forged_port_unreachable(TRUNK_IP, d.sip[0], ("127.0.0.1", src_port),
                                               trunk.addr))
    metrics_before = d.metrics()
    log_before = d.log_text().count("trunk state changed")
    stop = threading.Event()
    sent_icmp = [0]
    states = {n: [] for n in names}  # each trunk's (state, reason) changes seen on /status

    def flood():
        end = time.monotonic() + icmp_for
        nxt = time.monotonic()
        while time.monotonic() < end and not stop.is_set():
            for packet in packets:
                try:
                    raw.sendto(packet, (d.sip[0], 0))
                    sent_icmp[0] += 1
                except OSError:
                    pass
            nxt += icmp_every
            time.sleep(max(0.0, nxt - time.monotonic()))

    def watch():
        while not stop.is_set():
            s = d.status() or {}
            for t in s.get("trunks", []):
                seen = states.get(t.get("name"))
                st = (t.get("state"), t.get("reason"))
                if seen is not None and (not seen or seen[-1] != st):
                    seen.append(st)
            stop.wait(0.1)

    flooder = threading.Thread(target=flood, daemon=True)
    watcher = threading.Thread(target=watch, daemon=True)
    phone = Phone(CALLER_IP, d.sip)
    phone.sock.settimeout(0.01)
    invites, finals = {}, {}
    flood_start = time.monotonic()
    try:
        watcher.start()
        flooder.start()
        time.sleep(0.2)
        start = time.monotonic()
        placed = 0
        end = start + calls / rate + 15.0
        while time.monotonic() < end and len(finals) < calls:
            if placed < calls and time.monotonic() >= start + placed / rate:
                cid = new_call_id("%s-%02d" % (r.attack.split()[0].lower(), placed))
                invites[cid] = emergency_invite(phone.me, d.sip, cid, identity=False)
                phone.send(invites[cid])
                placed += 1
            m = phone._recv_one()
            if m is None or not m.is_response or m.cseq_method != "INVITE":
                continue
            cid = m.call_id
            if cid in invites and cid not in finals and m.status >= 200:
                finals[cid] = (m.status, m.contact_uri() or "")
                phone.send(phone.ack_for(invites[cid], m))
                if m.status < 300:
                    phone.send(phone.in_dialog("BYE", 2, invites[cid], m))
        phone.pump(0.5)  # the BYEs' answers
    finally:
        stop.set()
        flooder.join(timeout=icmp_for + 2)
        flood_end = time.monotonic()
        watcher.join(timeout=2)
        raw.close()
        phone.close()
    after = d.metrics()
    log_lines = d.log_text().count("trunk state changed") - log_before

    def delta(series):
        return after.get(series, 0.0) - metrics_before.get(series, 0.0)

    ok = sum(1 for s, _ in finals.values() if 200 <= s < 300)
    failed = len(invites) - ok
    r.see("%d ICMP sent" % sent_icmp[0])
    r.check(failed == 0, "%d of %d emergency calls answered, %d failed%s" % (
        ok, len(invites), failed,
        "" if not failed else " (%s)" % ", ".join(
            str(finals.get(c, ("no final",))[0]) for c in invites
            if not 200 <= finals.get(c, (0,))[0] < 300)))
    # Which trunk answered each call: the Contact of the 200 the caller got.
    answered_by = {t.name: 0 for t in env.trunks}
    for status, contact in finals.values():
        for t in env.trunks:
            if 200 <= status < 300 and contact.endswith("@%s:%d" % t.addr):
                answered_by[t.name] += 1
    tried = {t.name: sum(1 for c in invites if t.requests(c, "INVITE")) for t in env.trunks}
    both = sum(1 for c in invites if all(t.requests(c, "INVITE") for t in env.trunks))
    r.see("INVITEs reached %s (%d calls both); answered by %s" % (
        ", ".join("%s %d" % kv for kv in tried.items()), both,
        ", ".join("%s %d" % kv for kv in answered_by.items())))
    fo = {}
    for k in after:
        if k.startswith("lifeline_failovers_total{") and delta(k):
            trunk = re.search(r'trunk="([^"]+)"', k).group(1)
            reason = re.search(r'reason="([^"]+)"', k).group(1)
            fo["%s %s" % (trunk, reason)] = delta(k)
    if fo:
        r.see("failovers: %s" % ", ".join("%s %g" % kv for kv in sorted(fo.items())))
    for n in names:
        changes = {re.search(r'to="([^"]+)"', k).group(1): delta(k) for k in after
                   if k.startswith("lifeline_trunk_state_changes_total{")
                   and 'trunk="%s"' % n in k and delta(k)}
        went_down = any(s[0] == "down" for s in states[n]) or changes.get("down", 0) > 0
        r.see("%s: %s; state changes %s; it %s Down" % (
            n, " -> ".join("%s (%s)" % s for s in states[n]) or "state never read",
            ", ".join("%s %g" % kv for kv in sorted(changes.items())) or "none",
            "WENT" if went_down else "never went"))
    probes = {t.name: sum(1 for at, _, _ in t.requests(method="OPTIONS")
                          if flood_start <= at <= flood_end) for t in env.trunks}
    r.see("OPTIONS probes received during the %.1f s: %s (250 ms interval: about %d each)" % (
        flood_end - flood_start, ", ".join("%s %d" % kv for kv in probes.items()),
        (flood_end - flood_start) / 0.25))
    r.see("%d `trunk state changed` WARN lines logged" % log_lines)
    back = wait_until(lambda: all((d.trunk_status(n) or {}).get("state") == "up" for n in names), 3.0)
    r.see("afterwards: %s%s" % (
        ", ".join("%s %s" % (n, (d.trunk_status(n) or {}).get("state")) for n in names),
        "" if back else " (not all up within 3 s)"))
    if not fo and not any(delta(k) for k in after
                          if k.startswith("lifeline_trunk_state_changes_total{")):
        r.see("the ICMP had no visible effect (no failover, no state change): "
              "check that it reached the gateway's socket")
    return r


def a8_forged_icmp(env):
    r = Result("A8 forged ICMP port unreachable, primary",
               "ICMP 3/3 from %s (raw socket, IP_HDRINCL) quoting a datagram gateway -> primary, "
               "every 5 ms for 3 s, while 30 emergency calls are placed at 10/s from %s"
               % (TRUNK_IP, CALLER_IP),
               "0 failed emergency calls (calls may move to the backup); "
               "whether the primary stays Up is reported")
    return icmp_flood_with_calls(r, env, [env.primary])


def a8b_forged_icmp_both(env):
    r = Result("A8b forged ICMP port unreachable, both trunks",
               "as A8, quoting gateway -> primary and gateway -> backup (one each every 5 ms): "
               "every trunk of the emergency route looks refused",
               "0 failed emergency calls: ICMP alone never fails a call's last trunk")
    return icmp_flood_with_calls(r, env, [env.primary, env.backup])


ATTACKS = [a1_stranger, a2_untrusted, a3_trusted, a4_admin, a5_nul, a6_forged_dialog,
           a7_forged_response, a8_forged_icmp, a8b_forged_icmp_both]


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def build_lifeline():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    if not os.path.isabs(target):
        target = os.path.join(REPO, target)
    print("building: cargo build --release -p lifeline (target %s)" % target, file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-p", "lifeline"], cwd=REPO, check=True)
    return os.path.join(target, "release", "lifeline")


def on_alarm(signum, frame):
    raise Deadline("the run took longer than %d s" % RUN_DEADLINE_S)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lifeline", metavar="BIN",
                   help="the lifeline binary (default: cargo build --release -p lifeline)")
    default_out = os.path.join(tempfile.gettempdir(), "lifeline-attacks")
    p.add_argument("--out", metavar="DIR", default=default_out,
                   help="where attacks.md, lifeline.log and metrics.txt go (default: %s)"
                   % default_out)
    p.add_argument("--only", metavar="A1,A2", help="run only these attacks")
    args = p.parse_args()

    binary = os.path.abspath(args.lifeline) if args.lifeline else build_lifeline()
    if not os.access(binary, os.X_OK):
        print("no executable at %s" % binary, file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    only = {a.strip().upper() for a in args.only.split(",")} if args.only else None

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # runs the finally below
    signal.alarm(RUN_DEADLINE_S)
    trunks, daemon, results = [], None, []
    try:
        trunks = [Trunk("primary"), Trunk("backup")]
        daemon = Daemon(binary, trunks, args.out)
        daemon.wait_ready()
        env = Env(daemon, *trunks)
        print("lifeline %s: SIP udp %s:%d, admin %s:%d, trunks primary %s:%d, backup %s:%d"
              % ((binary,) + daemon.sip + daemon.admin + trunks[0].addr + trunks[1].addr),
              file=sys.stderr)
        for attack in ATTACKS:
            name = attack.__name__.split("_")[0].upper()
            if only and name not in only:
                continue
            print("%s ..." % name, file=sys.stderr)
            try:
                res = attack(env)
            except Deadline:
                raise
            except Exception as e:  # noqa: BLE001 - report it, go on
                res = Result(name, attack.__doc__ or attack.__name__, "(no exception)")
                res.check(False, "the harness failed: %r" % e)
            results.append(res)
            print("%s: %s" % (name, res.verdict), file=sys.stderr)
            if daemon.proc.poll() is not None:
                results.append(Result("daemon", "-", "still running"))
                results[-1].check(False, "lifeline exited with %s" % daemon.proc.returncode)
                break
    except Deadline as e:
        results.append(Result("run", "-", "done within %d s" % RUN_DEADLINE_S))
        results[-1].check(False, str(e))
    except Exception as e:  # noqa: BLE001
        print("the harness could not run: %s" % e, file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        if daemon is not None:
            try:
                with open(os.path.join(args.out, "metrics.txt"), "w") as f:
                    f.write(daemon.metrics_text())
            except OSError:
                pass
            daemon.stop()
        for t in trunks:
            t.stop()

    text = table(results)
    print(text)
    with open(os.path.join(args.out, "attacks.md"), "w") as f:
        f.write("# Attacks replayed against lifeline\n\n")
        f.write("`python3 tests/attacks/replay.py --lifeline %s --out %s`, %s\n\n"
                % (binary, args.out, time.strftime("%Y-%m-%d %H:%M:%S %Z")))
        f.write(text)
    failed = [r.attack for r in results if r.verdict == "FAIL"]
    if failed:
        print("FAILED: %s (daemon log: %s)" % (", ".join(failed),
                                             os.path.join(args.out, "lifeline.log")),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

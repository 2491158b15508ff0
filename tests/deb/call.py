#!/usr/bin/env python3
"""One emergency call over UDP, for tests/deb/run.sh.

Sends an INVITE to 999 from --source (an address of this host) to the
gateway at --gateway, waits for the final response, ACKs it if it is not a
2xx, and prints "STATUS CALL-ID". Exit 0 when a final response came, 1 when
none came within --timeout seconds.
"""

import argparse
import os
import re
import socket
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="caller address (IP)")
    ap.add_argument("--gateway", required=True, help="gateway IP:PORT")
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    gw_ip, gw_port = a.gateway.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.source, 0))
    port = s.getsockname()[1]
    tag = os.urandom(4).hex()
    branch = "z9hG4bK-deb-" + os.urandom(6).hex()
    call_id = f"deb-{os.urandom(8).hex()}@{a.source}"
    ruri = f"sip:999@{gw_ip}"
    common = (
        f"Via: SIP/2.0/UDP {a.source}:{port};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:+441632960123@{a.source}>;tag={tag}\r\n"
    )
    invite = (
        f"INVITE {ruri} SIP/2.0\r\n{common}"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@{a.source}:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    dest = (gw_ip, int(gw_port))
    s.sendto(invite.encode(), dest)
    deadline = time.monotonic() + a.timeout
    # Timer A: retransmit every 500 ms until a provisional response.
    resend, provisional = time.monotonic() + 0.5, False
    while True:
        now = time.monotonic()
        if now >= deadline:
            print(f"no final response {call_id}", file=sys.stderr)
            return 1
        wake = deadline if provisional else min(deadline, resend)
        s.settimeout(max(0.01, wake - now))
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            if not provisional and time.monotonic() >= resend:
                s.sendto(invite.encode(), dest)
                resend = time.monotonic() + 0.5
            continue
        text = data.decode("utf-8", "replace")
        m = re.match(r"SIP/2\.0 (\d{3})", text)
        if not m or call_id not in text:
            continue
        status = int(m.group(1))
        if status < 200:
            provisional = True
            continue
        if status >= 300:
            to = re.search(r"^(To|t):.*$", text, re.M | re.I)
            ack = (
                f"ACK {ruri} SIP/2.0\r\n{common}"
                f"{to.group(0) if to else f'To: <{ruri}>'}\r\n"
                f"Call-ID: {call_id}\r\n"
                "CSeq: 1 ACK\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            s.sendto(ack.encode(), dest)
        print(status, call_id)
        return 0


if __name__ == "__main__":
    sys.exit(main())

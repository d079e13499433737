#!/usr/bin/env python3
"""A real SMTP server for the notification tests (aiosmtpd).

Usage: smtp_sink.py PORT DIR

Every accepted message is stored as DIR/<n>.json: {"mail_from", "rcpt_tos", "data"}.
RCPT TO an address starting with `refuse` is answered 550 (permanent); one
starting with `tempfail` is answered 451 (transient) the first time it is seen and
accepted after that, as a greylisting server does. Prints `ready` once it accepts
connections, and runs until killed or until its standard input closes.
"""

import json
import os
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.seen_tempfail = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.lower()
        if local.startswith("refuse"):
            return "550 5.1.1 mailbox refused by the test sink"
        if local.startswith("tempfail"):
            with self.lock:
                first = local not in self.seen_tempfail
                self.seen_tempfail.add(local)
            if first:
                return "451 4.7.1 try again later (test sink greylisting)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", errors="replace"),
        }
        tmp = os.path.join(self.directory, f".{n}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.directory, f"{n}.json"))
        return "250 Message accepted for delivery"


def main():
    port = int(sys.argv[1])
    directory = sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()  # returns once the server answers
    print("ready", flush=True)
    try:
        # The test holds our standard input; when it goes away, so do we.
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()

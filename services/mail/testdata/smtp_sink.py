"""The outside world's mail server in services/mail's DKIM test (the
smarthost the workload relays to): takes every message and writes it,
as it came, to DIR/N.eml.

usage: smtp_sink.py ADDRESS PORT DIR
"""
import asyncore
import os
import smtpd
import sys

addr, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Sink(smtpd.SMTPServer):
    n = 0

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        Sink.n += 1
        tmp = os.path.join(outdir, "%d.tmp" % Sink.n)
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(outdir, "%d.eml" % Sink.n))


Sink((addr, port), None, decode_data=False)
print("listening on %s:%d" % (addr, port), flush=True)
asyncore.loop()

"""Checks the DKIM signature of a message against a published key, with
Debian's python3-dkim, as a recipient's server would: the TXT record is
the one given (what the domain's DNS would answer), not looked up.

usage: dkim_verify.py MESSAGE NAME TXT

NAME is the record's name (SELECTOR._domainkey.DOMAIN.), TXT its text.
Prints the signature's d= and s= and exits 0 when it verifies; non-zero
with the reason when it does not.
"""
import sys

import dkim

path, name, txt = sys.argv[1:4]
with open(path, "rb") as f:
    msg = f.read()
asked = []


def dnsfunc(qname, timeout=5):
    if isinstance(qname, bytes):
        qname = qname.decode()
    asked.append(qname)
    if qname.rstrip(".") == name.rstrip("."):
        return txt.encode()
    return None


d = dkim.DKIM(msg)
if not d.verify(dnsfunc=dnsfunc):
    sys.exit("signature does not verify (keys asked for: %s)" % asked)
print("verified: d=%s s=%s" % (d.domain.decode(), d.selector.decode()))

"""IMAP client of services/mail's TLS test: Python's imaplib against the
workload, as a mail user's client would connect.

usage: imap_client.py ADDRESS NAME CAFILE USER PASSWORD MESSAGE-ID

Connects to ADDRESS, checks the server's certificate against CAFILE for
NAME, and prints one line per step. Exits non-zero when a step does not
go as a correctly configured server must make it go.
"""
import imaplib
import ssl
import sys

addr, name, cafile, user, password, msgid = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)

# 143 without STARTTLS: the server must not take a password in the clear.
m = imaplib.IMAP4(addr, 143)
if "LOGINDISABLED" not in m.capabilities:
    sys.exit("143: LOGINDISABLED not announced before STARTTLS: %r" % (m.capabilities,))
try:
    m.login(user, password)
    sys.exit("143: LOGIN in the clear was accepted")
except imaplib.IMAP4.error as e:
    print("143 plaintext LOGIN refused:", e)
m.shutdown()

# 143 with STARTTLS: the certificate is checked for NAME (imaplib checks
# it against .host, which is the address it connected to).
m = imaplib.IMAP4(addr, 143)
m.host = name
m.starttls(ssl_context=ctx)
m.login(user, password)
print("143 STARTTLS LOGIN ok")
m.logout()


class SSLByName(imaplib.IMAP4_SSL):
    """IMAP4_SSL that dials an address but checks the certificate for a name."""

    def _create_socket(self, timeout):
        sock = imaplib.IMAP4._create_socket(self, timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=name)


m = SSLByName(addr, 993, ssl_context=ctx)
m.login(user, password)
typ, data = m.select("INBOX")
if typ != "OK":
    sys.exit("993: SELECT INBOX: %s %r" % (typ, data))
typ, data = m.search(None, "HEADER", "Message-ID", msgid)
nums = data[0].split()
if typ != "OK" or len(nums) != 1:
    sys.exit("993: SEARCH for %s: %s %r" % (msgid, typ, data))
typ, data = m.fetch(nums[0], "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
if typ != "OK":
    sys.exit("993: FETCH: %s %r" % (typ, data))
print("993 IMAPS LOGIN ok, fetched:", data[0][1].decode().strip())
m.logout()

"""The smarthost of services/mail's settings test, as an ISP's relay is:
Debian's aiosmtpd taking mail only from a client logged in with USER and
PASSWORD, and a login only after STARTTLS. Prints one line per login
attempt ("auth MECHANISM LOGIN: ok|refused", never the password) and
writes each message to DIR/N.eml.

usage: smtp_auth_sink.py ADDRESS PORT CERT KEY USER PASSWORD DIR
"""
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

addr, port, cert, key, user, password, outdir = sys.argv[1:8]
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(cert, key)


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        print("auth %s: refused (no login and password)" % mechanism, flush=True)
        return AuthResult(success=False, handled=False)
    ok = auth_data.login == user.encode() and auth_data.password == password.encode()
    print("auth %s %s: %s" % (mechanism, auth_data.login.decode(errors="replace"),
                              "ok" if ok else "refused"), flush=True)
    return AuthResult(success=ok, handled=False)


class Sink:
    n = 0

    async def handle_DATA(self, server, session, envelope):
        Sink.n += 1
        tmp = os.path.join(outdir, "%d.tmp" % Sink.n)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(outdir, "%d.eml" % Sink.n))
        return "250 OK"


c = Controller(Sink(), hostname=addr, port=int(port), tls_context=tls,
               require_starttls=True, auth_required=True, auth_require_tls=True,
               authenticator=authenticator)
c.start()
print("listening on %s:%s" % (addr, port), flush=True)
threading.Event().wait()

#!/usr/bin/env python3
"""A PCCS stand-in for the integration tests: serves one collateral document
(the dcap-qvl JSON layout, e.g. a sim node's report's "collateral") on the
Intel PCS v4 paths that include/veil/pccs.h documents:

  /{tdx|sgx}/certification/v4/tcb?fmspc=F     {"tcbInfo":<tcb_info>,"signature":"..."}
                                              + TCB-Info-Issuer-Chain
  /{tdx|sgx}/certification/v4/qe/identity     {"enclaveIdentity":<qe_identity>,...}
                                              + SGX-Enclave-Identity-Issuer-Chain
  /sgx/certification/v4/pckcrl?ca=C&encoding=der   DER + SGX-PCK-CRL-Issuer-Chain
  /sgx/certification/v4/rootcacrl             DER

tcbInfo / enclaveIdentity are the document's exact strings (the signed
bytes), the issuer chains URL-encoded PEM as Intel sends them.  A tcb
request for another FMSPC gets 404.

  pccs_server.py --collateral FILE --log FILE [--status N] [--delay S] [--port N]

--status N answers every request with status N and no body (a PCCS that is
down); --delay S waits S seconds before each answer (a PCCS that hangs).  Binds 127.0.0.1 port --port (default 0: any free port), prints "listening on http://127.0.0.1:PORT"
and appends one line per request ("GET PATH?QUERY") to --log.  Standard
library only."""
import argparse
import http.server
import json
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--collateral")
    ap.add_argument("--log", required=True)
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    col = {}
    if a.collateral:
        with open(a.collateral, encoding="utf-8") as f:
            col = json.load(f)
    log = open(a.log, "a", encoding="utf-8")

    def chain(name):
        return urllib.parse.quote(col[name], safe="")

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status, body=b"", ctype="application/json", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            log.write("GET %s\n" % self.path)
            log.flush()
            if a.delay:
                time.sleep(a.delay)
            if a.status != 200:
                self.send(a.status)
                return
            u = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(u.query)
            p = u.path
            if p in ("/tdx/certification/v4/tcb", "/sgx/certification/v4/tcb"):
                fm = json.loads(col["tcb_info"]).get("fmspc", "")
                if q.get("fmspc", [""])[0].upper() != fm.upper():
                    self.send(404)
                    return
                body = '{"tcbInfo":%s,"signature":"%s"}' % (
                    col["tcb_info"], col["tcb_info_signature"])
                self.send(200, body.encode(), headers=[
                    ("TCB-Info-Issuer-Chain", chain("tcb_info_issuer_chain"))])
            elif p in ("/tdx/certification/v4/qe/identity",
                       "/sgx/certification/v4/qe/identity"):
                body = '{"enclaveIdentity":%s,"signature":"%s"}' % (
                    col["qe_identity"], col["qe_identity_signature"])
                self.send(200, body.encode(), headers=[
                    ("SGX-Enclave-Identity-Issuer-Chain",
                     chain("qe_identity_issuer_chain"))])
            elif p == "/sgx/certification/v4/pckcrl" and \
                    q.get("ca", [""])[0] in ("processor", "platform"):
                self.send(200, bytes.fromhex(col["pck_crl"]),
                          "application/pkix-crl", headers=[
                              ("SGX-PCK-CRL-Issuer-Chain",
                               chain("pck_crl_issuer_chain"))])
            elif p == "/sgx/certification/v4/rootcacrl":
                self.send(200, bytes.fromhex(col["root_ca_crl"]),
                          "application/pkix-crl")
            else:
                self.send(404)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), H)
    print("listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

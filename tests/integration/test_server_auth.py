"""`atomflow serve --auth token`: what each role may do, the refusal of `--auth none` on a
non-loopback address, and secrets: a credential kept with `atomflow secrets set` reaches the
participant through a service identity and appears in no API answer, log line or store file."""

import json
import os
import secrets as random_secrets
import sqlite3
import subprocess
import unittest

from counting_participant import CountingParticipant
from pipeline_harness import BINARY
from server_harness import (ServerTestCase, create_token, execution_path, run_atomflow,
                            set_secret)

SIMPLE = "main:\n  steps:\n    - done:\n        return: 1\n"

# A transaction whose compensation always gets 500: it ends COMPENSATION_FAILED (with
# ATOMFLOW_SLEEP_SCALE=0 the retries do not wait).
STUCK = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - deploy:
                call: http.post
                args:
                  url: ${args.url + "/ok/deploy"}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/error/undeploy"}
            - boom:
                raise: smoke test failed
"""

# Every kind of call an identity's header could leak from: a plain call whose response is
# logged and returned, a transaction branch with its compensation, a call that fails (its
# error is caught and logged), and a callback endpoint.
AS_TRAINER = """
main:
  params: [args]
  steps:
    - check:
        call: http.post
        args:
          url: ${args.url + "/auth/check"}
          body: {hello: "participant"}
        result: r
    - show:
        call: sys.log
        args:
          json: ${r}
          severity: INFO
    - release:
        transaction:
          steps:
            - deploy:
                call: http.post
                args:
                  url: ${args.url + "/auth/deploy"}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/auth/undeploy"}
    - refused:
        try:
          call: http.post
          args:
            url: ${args.url + "/conflict/refused"}
        except:
          as: e
          steps:
            - log_error:
                call: sys.log
                args:
                  json: ${e}
                  severity: ERROR
    - redirected:
        try:
          call: http.get
          args:
            url: ${args.url + "/redirect/" + string(args.other_port) + "/away"}
        except:
          as: e
          steps:
            - ignore:
                assign:
                  - redirect_error: ${e}
    - done:
        return: ${r}
"""


# Awaits one callback, after telling the participant its URL.
AWAIT = """
main:
  params: [args]
  steps:
    - make:
        call: events.create_callback_endpoint
        args:
          http_callback_method: POST
        result: cb
    - tell:
        call: http.post
        args:
          url: ${args.url + "/ok/tell"}
          body:
            url: ${cb.url}
    - wait:
        call: events.await_callback
        args:
          callback: ${cb}
          timeout: 60
        result: request
    - done:
        return: ${request.http_request.body}
"""


class ServerAuthTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.participant = CountingParticipant()
        self.addCleanup(self.participant.stop)
        self.tokens = {role: create_token(self.store, f"{role}-1", role)
                       for role in ("viewer", "invoker", "deployer", "admin")}
        for role, token in self.tokens.items():
            self.assertTrue(token.startswith("afk_"), f"{role}: {token!r}")
        self.server = self.start_server(auth="token", log_format="json",
                                        env={"ATOMFLOW_SLEEP_SCALE": "0"})
        self.anonymous = self.server.client()
        self.as_role = {role: self.server.client(token) for role, token in self.tokens.items()}

    def test_no_or_bad_token_is_unauthenticated(self):
        for what, client in [("no token", self.anonymous),
                             ("unknown token", self.server.client("afk_" + "0" * 64)),
                             ("not a bearer", self.server.client(None))]:
            with self.subTest(what):
                headers = {"Authorization": "Basic dXNlcjpwYXNz"} if what == "not a bearer" \
                    else None
                answer = client.get("/v1/workflows", headers=headers)
                self.assert_error(answer, 401, "UNAUTHENTICATED")
                self.assertNotIn(self.tokens["viewer"], answer.text)
        self.assertEqual(self.anonymous.get("/healthz").status, 200)
        # Ready once the recovery that runs beside the listener has finished.
        self.wait_until(lambda: self.anonymous.get("/readyz").status == 200, "readiness")
        self.assert_error(self.anonymous.get("/metrics"), 401, "UNAUTHENTICATED")

    def test_each_role_does_what_it_may_and_no_more(self):
        viewer, invoker = self.as_role["viewer"], self.as_role["invoker"]
        deployer, admin = self.as_role["deployer"], self.as_role["admin"]

        for who in (viewer, invoker):
            refused = who.post("/v1/workflows", {"sourceContents": SIMPLE},
                               query={"workflowId": "simple"})
            self.assert_error(refused, 403, "PERMISSION_DENIED")
        self.assert_error(viewer.get("/v1/workflows/simple"), 404, "NOT_FOUND")
        self.deploy(deployer, "simple", SIMPLE)
        self.assertEqual(viewer.get("/v1/workflows/simple").status, 200)
        self.assertEqual(viewer.get("/metrics").status, 200)
        for who in (viewer, invoker):
            self.assert_error(who.patch("/v1/workflows/simple", {"description": "x"}), 403,
                              "PERMISSION_DENIED")
            self.assert_error(who.delete("/v1/workflows/simple"), 403, "PERMISSION_DENIED")

        self.assert_error(viewer.post("/v1/workflows/simple/executions", {}), 403,
                          "PERMISSION_DENIED")
        self.assertEqual(self.list_all(viewer, "/v1/workflows/simple/executions",
                                       "executions"), [])
        ran = self.wait_finished(viewer, self.run_execution(invoker, "simple"))
        self.assertEqual(ran["state"], "SUCCEEDED")
        self.assert_error(viewer.post(execution_path(ran) + ":cancel"), 403,
                          "PERMISSION_DENIED")

        # Resolving a stuck transaction is for admins only.
        self.deploy(deployer, "stuck", STUCK)
        stuck = self.wait_finished(viewer, self.run_execution(
            invoker, "stuck", {"url": self.participant.url}))
        self.assertEqual(stuck["state"], "FAILED", stuck)
        listed = viewer.get(execution_path(stuck) + "/transactions")
        self.assertEqual(listed.status, 200, listed)
        (transaction,) = listed.body["transactions"]
        self.assertEqual(transaction["state"], "COMPENSATION_FAILED", transaction)
        resolve = {"gid": transaction["gid"], "action": "MARK_COMPENSATED"}
        for who in (viewer, invoker, deployer):
            self.assert_error(who.post("/v1/transactions:resolve", resolve), 403,
                              "PERMISSION_DENIED")
        resolved = admin.post("/v1/transactions:resolve", resolve)
        self.assertEqual(resolved.status, 200, resolved)
        after = viewer.get(execution_path(stuck) + "/transactions")
        self.assertEqual([t["state"] for t in after.body["transactions"]], ["ABORTED"])

        # Sending a callback takes an invoker; the refused ones are not delivered.
        self.deploy(deployer, "await", AWAIT)
        waiting = self.run_execution(invoker, "await", {"url": self.participant.url})
        self.assertTrue(self.participant.wait_for("/ok/tell"))
        url = self.participant.requests_to("/ok/tell")[0].body["url"]
        path = url[len(self.server.url):]
        self.assert_error(self.anonymous.post(path, {"from": "anonymous"}), 401,
                          "UNAUTHENTICATED")
        self.assert_error(viewer.post(path, {"from": "viewer"}), 403, "PERMISSION_DENIED")
        self.assertEqual(invoker.post(path, {"from": "invoker"}).status, 200)
        delivered = self.wait_finished(viewer, waiting)
        self.assertEqual(json.loads(delivered["result"]), {"from": "invoker"}, delivered)

        # A revoked token stops working at once.
        revoked = run_atomflow("tokens", "revoke", "invoker-1", store=self.store)
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        self.assert_error(invoker.post("/v1/workflows/simple/executions", {}), 401,
                          "UNAUTHENTICATED")

        for token in self.tokens.values():
            self.assertNotIn(token, self.server.log_text())

    def test_auth_none_is_refused_off_loopback(self):
        done = subprocess.run([BINARY, "serve", "--listen", "0.0.0.0:0", "--store",
                               self.store, "--auth", "none"],
                              capture_output=True, text=True, timeout=60, cwd=self.root)
        self.assertNotEqual(done.returncode, 0, done.stderr)
        message = done.stderr.lower()
        self.assertIn("auth", message, done.stderr)
        self.assertIn("loopback", message, done.stderr)
        self.assertNotIn("listening on", message)

    def test_a_secret_reaches_the_participant_and_nowhere_else(self):
        secret = "sv-" + random_secrets.token_hex(20)
        set_secret(self.store, "participant-token", secret)
        self.participant.expected_authorization = "Bearer " + secret
        config = os.path.join(self.root, "atomflow.yaml")
        with open(config, "w", encoding="utf-8") as file:
            file.write(f"""identities:
  trainer:
    http:
      - url_prefix: {self.participant.url}/
        headers:
          Authorization: {{secret: participant-token, prefix: "Bearer "}}
""")
        self.server.stop()
        self.server = self.start_server(auth="token", log_format="json", config=config,
                                        extra_args=["--log-level", "debug"])
        deployer = self.server.client(self.tokens["deployer"])
        invoker = self.server.client(self.tokens["invoker"])
        admin = self.server.client(self.tokens["admin"])

        self.deploy(deployer, "trained", AS_TRAINER, serviceAccount="trainer")
        self.deploy(deployer, "anonymous", AS_TRAINER)
        other = CountingParticipant()  # outside the identity's url_prefix
        self.addCleanup(other.stop)
        done = self.wait_finished(admin, self.run_execution(
            invoker, "trained", {"url": self.participant.url, "other_port": other.port}))
        self.assertEqual(done["state"], "SUCCEEDED", done)
        check = self.participant.requests_to("/auth/check")
        self.assertEqual([r.authorization for r in check], ["Bearer " + secret])
        self.assertEqual([r.authorization for r in self.participant.requests_to(
            "/auth/deploy")], ["Bearer " + secret])
        # A redirect to a host outside the identity's prefix does not carry the header.
        self.assertEqual([r.authorization for r in other.snapshot()
                          if r.authorization and secret in r.authorization], [])
        # Without the service account the same workflow is refused by the participant.
        anonymous = self.wait_finished(admin, self.run_execution(
            invoker, "anonymous", {"url": self.participant.url, "other_port": other.port}))
        self.assertEqual(anonymous["state"], "FAILED", anonymous)
        self.assertIsNone(self.participant.requests_to("/auth/check")[-1].authorization)

        answers = {}
        for execution in (done, anonymous):
            path = execution_path(execution)
            for suffix in ("", "/stepEntries?pageSize=1000", "/logs", "/transactions",
                           "/callbacks"):
                answers[path + suffix] = admin.get(path + suffix)
        for path in ("/v1/workflows", "/v1/workflows/trained", "/v1/workflows/trained/"
                     "executions", "/v1/workflows/trained:listRevisions", "/v1/transactions",
                     "/metrics"):
            answers[path] = admin.get(path)
        gids = [t["gid"] for t in answers[execution_path(done) + "/transactions"]
                .body["transactions"]]
        self.assertEqual(len(gids), 1, answers[execution_path(done) + "/transactions"])
        answers["transaction"] = admin.get("/v1/transactions/" + gids[0].replace(
            ":", "%3A").replace("#", "%23"))
        secrets_list = run_atomflow("secrets", "list", store=self.store)
        for where, answer in answers.items():
            with self.subTest(where):
                self.assertEqual(answer.status, 200, answer)
                self.assertNotIn(secret, answer.text)
        self.assertNotIn(secret, secrets_list.stdout + secrets_list.stderr)
        self.assertIn("participant-token", secrets_list.stdout)

        log = self.server.log_text()
        self.assertIn("execution", log)
        self.assertNotIn(secret, log, "a server log line holds the secret")
        for token in self.tokens.values():
            self.assertNotIn(token, log)

        key_file = self.store + ".key"
        if os.path.exists(key_file):
            self.assertEqual(os.stat(key_file).st_mode & 0o077, 0, "the key file is readable "
                                                                  "by others")
        self.server.stop()
        connection = sqlite3.connect(self.store)
        try:
            payloads = [row[0] for row in connection.execute("SELECT payload FROM journal_entries")]
        finally:
            connection.close()
        self.assertTrue(payloads)
        self.assertFalse([p for p in payloads if secret in p], "the journal holds the secret")
        for suffix in ("", "-wal", "-journal"):
            path = self.store + suffix
            if os.path.exists(path):
                with open(path, "rb") as file:
                    self.assertNotIn(secret.encode(), file.read(), f"{path} holds the secret")


if __name__ == "__main__":
    unittest.main()

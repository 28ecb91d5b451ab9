"""The client commands (`atomflow workflows ...`, `atomflow executions ...`, `atomflow txn ...`)
against a real `atomflow serve` on loopback, and the same commands on a local store without
a server."""

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest

from pipeline_harness import BINARY, RUN_TIMEOUT
from server_harness import AtomflowServer, create_token
from test_txn_resolve import WORKFLOW as COMPENSATING, FlakyUndeployServer

HELLO = """main:
  params: [args]
  steps:
    - greet:
        assign:
          - who: ${default(map.get(args, "name"), "world")}
    - note:
        call: sys.log
        args:
          text: ${"greeting " + who}
    - done:
        return: ${"hello, " + who}
"""

SLOW = """main:
  steps:
    - nap:
        call: sys.sleep
        args:
          seconds: 600
    - done:
        return: "woke up"
"""

FAILING = """main:
  steps:
    - boom:
        raise: "it broke"
"""

# Line 4, column 17: the undefined variable.
BROKEN = """main:
  steps:
    - a:
        return: ${undefined_var}
"""


class ClientTestCase(unittest.TestCase):
    """A temporary folder with the workflow files; atomflow() runs the CLI there."""

    def setUp(self):
        if not os.access(BINARY, os.X_OK):
            self.fail(f"atomflow binary not found at {BINARY} (set ATOMFLOW_BINARY)")
        self.root = tempfile.mkdtemp(prefix="atomflow-client-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        for name, text in (("hello", HELLO), ("slow", SLOW), ("failing", FAILING),
                           ("broken", BROKEN)):
            with open(self.path(name), "w", encoding="utf-8") as file:
                file.write(text)

    def path(self, name):
        return os.path.join(self.root, name + ".yaml")

    def environment(self):
        env = dict(os.environ)
        for name in ("ATOMFLOW_SERVER", "ATOMFLOW_TOKEN", "ATOMFLOW_CRASH_AT"):
            env.pop(name, None)
        return env

    def atomflow(self, *command, env=None):
        environment = self.environment()
        environment.update(env or {})
        return subprocess.run([BINARY, *command], cwd=self.root, env=environment,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)

    def json_of(self, *command, status=0):
        done = self.atomflow(*command, "--json")
        self.assertEqual(done.returncode, status, f"{command}: {done.stderr}")
        return json.loads(done.stdout)

    def edit_hello(self, greeting):
        with open(self.path("hello"), "w", encoding="utf-8") as file:
            file.write(HELLO.replace("hello, ", greeting))


class ServerClientTest(ClientTestCase):
    """The commands through the REST API of a real server (`--server URL`)."""

    def setUp(self):
        super().setUp()
        self.server = AtomflowServer(self.root, os.path.join(self.root, "server.db"))
        self.addCleanup(self.server.close)
        self.server.start()

    def remote(self, *command, status=0):
        return self.json_of(*command, "--server", self.server.url, status=status)

    def test_deploy_makes_a_new_revision_only_when_the_source_changes(self):
        first = self.remote("workflows", "deploy", "hello", self.path("hello"), "--label",
                            "team=ml", "--description", "says hello")
        self.assertTrue(first["created"])
        self.assertRegex(first["revision_id"], r"^000001-[0-9a-f]{3}$")

        same = self.remote("workflows", "deploy", "hello", self.path("hello"))
        self.assertFalse(same["created"])
        self.assertFalse(same["new_revision"])
        self.assertEqual(same["revision_id"], first["revision_id"])
        self.assertEqual(same["labels"], {"team": "ml"})  # fields not given stay as they were

        self.edit_hello("hi, ")
        changed = self.remote("workflows", "deploy", "hello", self.path("hello"))
        self.assertTrue(changed["new_revision"])
        self.assertRegex(changed["revision_id"], r"^000002-")

        (listed,) = self.remote("workflows", "list")
        self.assertEqual((listed["name"], listed["revision_id"]), ("hello", changed["revision_id"]))
        self.assertEqual(listed["description"], "says hello")
        old = self.remote("workflows", "describe", "hello", "--revision", first["revision_id"],
                          "--source")
        self.assertIn('"hello, " + who', old["source"])

        table = self.atomflow("workflows", "list", "--server", self.server.url)
        self.assertEqual(table.stdout.split("\n")[0].split(), ["NAME", "REVISION", "UPDATED",
                                                               "DESCRIPTION"])

    def test_a_bad_workflow_is_rejected_with_its_line_and_column(self):
        done = self.atomflow("workflows", "deploy", "broken", self.path("broken"), "--server",
                             self.server.url)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("broken.yaml:4:17: undefined variable 'undefined_var'", done.stderr)
        self.assertIn("HTTP 400", done.stderr)
        self.assertEqual(self.remote("workflows", "list"), [])

    def test_run_wait_describe_and_logs(self):
        self.remote("workflows", "deploy", "hello", self.path("hello"))
        outcome = self.remote("executions", "run", "hello", "--data", '{"name": "Ada"}',
                              "--label", "who=ada", "--wait")
        self.assertEqual((outcome["state"], outcome["result"]), ("SUCCEEDED", "hello, Ada"))
        execution_id = outcome["id"]

        # The id alone is found by asking each workflow; the full name needs no search.
        described = self.remote("executions", "describe", execution_id)
        self.assertEqual(described["labels"], {"who": "ada"})
        self.assertEqual([s["step"] for s in described["steps"]], ["greet", "note", "done"])
        name = f"workflows/hello/executions/{execution_id}"
        by_name = self.remote("executions", "describe", name)
        self.assertEqual(by_name["argument"], {"name": "Ada"})

        (listed,) = self.remote("executions", "list", "--workflow", "hello")
        self.assertEqual((listed["id"], listed["state"]), (execution_id, "SUCCEEDED"))

        logs = self.remote("executions", "logs", execution_id)
        self.assertIn({"step": "note", "text": "greeting Ada"},
                      [{"step": e["step"], "text": e["text"]} for e in logs if e["type"] == "log"])
        self.assertEqual([e["step"] for e in logs if e["type"] == "step"],
                         ["greet", "note", "done"])

        failed = self.atomflow("executions", "run", "hello", "--wait", "--server",
                               self.server.url, "--data", "[1")
        self.assertEqual(failed.returncode, 2, failed.stderr)

    def test_a_failed_execution_exits_1(self):
        self.remote("workflows", "deploy", "failing", self.path("failing"))
        outcome = self.remote("executions", "run", "failing", "--wait", status=1)
        self.assertEqual(outcome["state"], "FAILED")
        self.assertIn("it broke", json.dumps(outcome["error"]))

    def test_cancel_then_wait_shows_cancelled(self):
        self.remote("workflows", "deploy", "slow", self.path("slow"))
        started = self.atomflow("executions", "run", "slow", "--server", self.server.url)
        self.assertEqual(started.returncode, 0, started.stderr)
        execution_id = started.stdout.strip()

        still = self.remote("executions", "wait", execution_id, "--timeout", "0.5", status=124)
        self.assertEqual(still["state"], "ACTIVE")
        self.remote("executions", "cancel", execution_id)
        outcome = self.remote("executions", "wait", execution_id, status=1)
        self.assertEqual(outcome["state"], "CANCELLED")

    def test_unknown_things_exit_2(self):
        self.remote("workflows", "deploy", "hello", self.path("hello"))
        for command in (("executions", "describe", "no-such-id"),
                        ("executions", "describe", "no-such-id", "--workflow", "hello"),
                        ("executions", "logs", "workflows/hello/executions/no-such-id"),
                        ("executions", "run", "no-such-workflow"),
                        ("workflows", "describe", "no-such-workflow"),
                        ("txn", "describe", "no-such-gid")):
            done = self.atomflow(*command, "--server", self.server.url)
            self.assertEqual(done.returncode, 2, f"{command}: {done.stderr}")
            self.assertIn("no-such-", done.stderr)  # the message names what is missing

    def test_the_server_comes_from_the_environment(self):
        env = {"ATOMFLOW_SERVER": self.server.url}
        deployed = self.atomflow("workflows", "deploy", "hello", self.path("hello"), env=env)
        self.assertEqual(deployed.returncode, 0, deployed.stderr)
        self.assertEqual(json.loads(self.atomflow("workflows", "list", "--json", env=env).stdout)
                         [0]["name"], "hello")
        # An explicit --store beats the environment: the local store has no workflows.
        local_db = os.path.join(self.root, "local.db")
        self.assertEqual(self.atomflow("run", self.path("hello"), "--store", local_db).returncode,
                         0)
        local = self.atomflow("workflows", "list", "--json", "--store", local_db, env=env)
        self.assertEqual(json.loads(local.stdout), [])
        both = self.atomflow("workflows", "list", "--server", self.server.url, "--store", "x.db")
        self.assertEqual(both.returncode, 2)

    def test_txn_list_and_resolve_through_the_server(self):
        self.assertEqual(self.remote("txn", "list"), [])
        # A server of its own whose compensations retry without waiting.
        self.server.close()
        self.server = AtomflowServer(self.root, os.path.join(self.root, "txn.db"),
                                     env={"ATOMFLOW_SLEEP_SCALE": "0"})
        self.addCleanup(self.server.close)
        self.server.start()
        participant = FlakyUndeployServer()
        self.addCleanup(participant.stop)
        with open(self.path("release"), "w", encoding="utf-8") as file:
            file.write(COMPENSATING)
        self.remote("workflows", "deploy", "release", self.path("release"))
        outcome = self.remote("executions", "run", "release", "--wait", "--data",
                              json.dumps({"url": participant.url}), status=1)
        self.assertEqual(outcome["error"]["state"], "COMPENSATION_FAILED")

        (stuck,) = self.remote("txn", "list", "--state", "COMPENSATION_FAILED")
        self.assertEqual(self.remote("txn", "describe", stuck["gid"])["state"],
                         "COMPENSATION_FAILED")
        participant.healthy.set()
        resolved = self.remote("txn", "resolve", stuck["gid"], "--retry")
        self.assertEqual(resolved["state"], "ABORTED")
        self.assertEqual(self.remote("txn", "list", "--state", "COMPENSATION_FAILED"), [])


class TokenTest(ClientTestCase):
    """A server with --auth token takes the token from ATOMFLOW_TOKEN."""

    def test_the_token_comes_from_the_environment(self):
        store = os.path.join(self.root, "server.db")
        token = create_token(store, "ci", "deployer")
        server = AtomflowServer(self.root, store, auth="token")
        self.addCleanup(server.close)
        server.start()

        refused = self.atomflow("workflows", "list", "--server", server.url)
        self.assertEqual(refused.returncode, 2)
        self.assertIn("HTTP 401", refused.stderr)
        self.assertIn("ATOMFLOW_TOKEN", refused.stderr)
        self.assertNotIn(token, refused.stderr)
        deployed = self.atomflow("workflows", "deploy", "hello", self.path("hello"), "--server",
                                 server.url, env={"ATOMFLOW_TOKEN": token})
        self.assertEqual(deployed.returncode, 0, deployed.stderr)


class UnreachableServerTest(ClientTestCase):

    def test_an_unreachable_server_is_named_in_the_message(self):
        done = self.atomflow("workflows", "list", "--server", "http://127.0.0.1:1")
        self.assertEqual(done.returncode, 2)
        self.assertIn("cannot reach the server at http://127.0.0.1:1", done.stderr)


class NotAnAtomflowServerTest(ClientTestCase):

    # Regression: a 200 answer of another shape aborted the client with a JSON type error.
    def test_an_answer_of_another_shape_is_an_error_not_a_crash(self):
        class StringAnswer(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b'"not atomflow"'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StringAnswer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for command in (("executions", "list"), ("workflows", "list")):
            done = self.atomflow(*command, "--server", url)
            self.assertEqual(done.returncode, 2, done.stderr)
            self.assertIn("atomflow:", done.stderr)


class LocalStoreClientTest(ClientTestCase):
    """Without a server the same commands work on the local store."""

    def local(self, *command, status=0):
        return self.json_of(*command, "--store", os.path.join(self.root, "atomflow.db"),
                            status=status)

    def test_deploy_run_and_inspect_on_the_local_store(self):
        first = self.local("workflows", "deploy", "hello", self.path("hello"))
        self.assertTrue(first["created"])
        self.assertFalse(self.local("workflows", "deploy", "hello", self.path("hello"))
                         ["new_revision"])
        self.edit_hello("hi, ")
        second = self.local("workflows", "deploy", "hello", self.path("hello"))
        self.assertTrue(second["new_revision"])

        # Locally the command is the process that runs the execution: it runs to its end.
        outcome = self.local("executions", "run", "hello", "--data", '{"name": "Bo"}')
        self.assertEqual((outcome["state"], outcome["result"]), ("SUCCEEDED", "hi, Bo"))
        execution_id = outcome["id"]
        (listed,) = self.local("executions", "list", "--workflow", "hello")
        self.assertEqual((listed["id"], listed["revision_id"]),
                         (execution_id, second["revision_id"]))
        self.assertEqual(self.local("executions", "wait", execution_id)["result"], "hi, Bo")
        logs = self.local("executions", "logs", execution_id)
        self.assertIn("greeting Bo", [e.get("text") for e in logs])
        name = f"workflows/hello/executions/{execution_id}"
        described = self.local("executions", "describe", name)
        self.assertEqual(described["revision_id"], second["revision_id"])

        cancel = self.atomflow("executions", "cancel", execution_id, "--store",
                               os.path.join(self.root, "atomflow.db"))
        self.assertEqual(cancel.returncode, 2)
        self.assertIn("SUCCEEDED already", cancel.stderr)

        self.local("workflows", "delete", "hello")
        self.assertEqual(self.local("workflows", "list"), [])
        self.local("executions", "describe", execution_id)  # its executions stay readable

    def test_local_rejections_exit_2(self):
        store = os.path.join(self.root, "atomflow.db")
        broken = self.atomflow("workflows", "deploy", "broken", self.path("broken"), "--store",
                               store)
        self.assertEqual(broken.returncode, 2)
        self.assertIn("broken.yaml:4:17: undefined variable", broken.stderr)
        with open(self.path("binary"), "wb") as file:
            file.write(b"main:\n  steps:\n    - a:\n        return: \xb9\xff\n")
        binary = self.atomflow("workflows", "deploy", "binary", self.path("binary"), "--store",
                               store)
        self.assertEqual(binary.returncode, 2, binary.stderr)
        self.assertIn("binary.yaml is not UTF-8 text", binary.stderr)
        unknown = self.atomflow("executions", "describe", "no-such-id", "--store", store)
        self.assertEqual(unknown.returncode, 2)
        missing = self.atomflow("executions", "run", "no-such-workflow", "--store", store)
        self.assertEqual(missing.returncode, 2)
        self.assertTrue(re.search(r"no-such-workflow.*not found", missing.stderr), missing.stderr)


class ConfigMistakeTest(ClientTestCase):
    """A mistake in atomflow.yaml is named, and leaves no store file behind: the next run, with
    the file fixed, must not find a store that the failed one created."""

    def test_a_bad_config_file_creates_no_store(self):
        with open(os.path.join(self.root, "atomflow.yaml"), "w", encoding="utf-8") as file:
            file.write("databases:\n  registry: [1, 2\n")
        run = self.atomflow("run", self.path("hello"))
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertRegex(run.stderr, r"atomflow\.yaml:3:1: not valid YAML")
        serve = self.atomflow("serve", "--listen", "127.0.0.1:0", "--auth", "none")
        self.assertEqual(serve.returncode, 2, serve.stderr)
        self.assertRegex(serve.stderr, r"atomflow\.yaml:3:1: not valid YAML")
        self.assertEqual(sorted(os.listdir(self.root)),
                         ["atomflow.yaml", "broken.yaml", "failing.yaml", "hello.yaml",
                          "slow.yaml"])

    def test_a_misspelled_section_is_named_with_its_line(self):
        """Regression: `databses:` was accepted silently, and every database was unknown."""
        with open(os.path.join(self.root, "atomflow.yaml"), "w", encoding="utf-8") as file:
            file.write("# test settings\ndatabses:\n  registry: host=db\n")
        run = self.atomflow("run", self.path("hello"))
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("atomflow.yaml:2:1: unknown section 'databses' (the sections are "
                      "databases, identities and sql)", run.stderr)
        self.assertNotIn("atomflow.db", os.listdir(self.root))


class DataMistakeTest(ClientTestCase):
    """A number too large for a double in --data crashed the command (an uncaught parser
    exception, exit 134); it is a mistake in the argument like any other."""

    def test_an_overflowing_number_is_an_error_not_a_crash(self):
        store = os.path.join(self.root, "atomflow.db")
        run = self.atomflow("run", self.path("hello"), "--data", '{"name": 1e999}')
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("atomflow: --data has a number too large for a double: '1e999'",
                      run.stderr)
        self.json_of("workflows", "deploy", "hello", self.path("hello"), "--store", store)
        local = self.atomflow("executions", "run", "hello", "--data", '{"name": 1e999}',
                              "--store", store)
        self.assertEqual(local.returncode, 2, local.stderr)
        self.assertIn("--data has a number too large for a double", local.stderr)

    def test_an_empty_data_is_a_mistake_not_a_missing_argument(self):
        run = self.atomflow("run", self.path("hello"), "--data", "")
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("atomflow: --data: is empty", run.stderr)
        self.assertNotIn("atomflow.db", os.listdir(self.root))


class ParserMistakeTest(ClientTestCase):
    """What the argument parser refuses is said in the command's own voice."""

    def test_an_unknown_command_is_named(self):
        bogus = self.atomflow("--store", "x.db", "bogus", "run")
        self.assertEqual(bogus.returncode, 2)
        self.assertIn("atomflow: unknown command 'bogus' (the commands are run, validate",
                      bogus.stderr)

    def test_top_level_options_work_after_the_command(self):
        run = self.atomflow("run", self.path("hello"), "--log-level", "info", "--json")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("execution.started", run.stderr)
        wrong = self.atomflow("run", self.path("hello"), "--log-level", "verbose")
        self.assertEqual(wrong.returncode, 2)
        self.assertIn("atomflow: --log-level: verbose not in", wrong.stderr)

    def test_a_negative_wait_timeout_is_refused(self):
        wait = self.atomflow("executions", "wait", "some-id", "--timeout", "-1")
        self.assertEqual(wait.returncode, 2)
        self.assertIn("atomflow: --timeout: must be 0 or more seconds, not -1", wait.stderr)


class MissingStoreTest(ClientTestCase):
    """Regression: commands that only read created an empty atomflow.db, and a misspelled
    --store quietly listed nothing with exit 0. They now say there is no store (exit 2) and
    leave the folder as it was; commands that write still create the store."""

    FILES = ["broken.yaml", "failing.yaml", "hello.yaml", "slow.yaml"]

    def test_reading_commands_refuse_a_missing_store_and_create_none(self):
        for command in (["executions", "list"], ["executions", "describe", "x"],
                        ["executions", "logs", "x"], ["executions", "wait", "x"],
                        ["executions", "cancel", "x"], ["executions", "resume", "x"],
                        ["txn", "list"], ["txn", "describe", "g"],
                        ["txn", "resolve", "g", "--retry"], ["tokens", "list"],
                        ["workflows", "list"], ["recover"]):
            done = self.atomflow(*command)
            self.assertEqual(done.returncode, 2, f"{command}: {done.stderr}")
            self.assertIn("atomflow: no store at atomflow.db", done.stderr, command)
            named = self.atomflow(*command, "--store", "nonexist.db")
            self.assertEqual(named.returncode, 2, f"{command}: {named.stderr}")
            self.assertIn("no store at nonexist.db", named.stderr, command)
            self.assertEqual(sorted(os.listdir(self.root)), self.FILES, command)

    def test_writing_commands_still_create_the_store(self):
        run = self.atomflow("run", self.path("hello"))
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("atomflow.db", os.listdir(self.root))
        (listed,) = self.json_of("executions", "list")
        self.assertEqual(listed["state"], "SUCCEEDED")

    def test_a_refused_serve_leaves_no_new_store(self):
        public = self.atomflow("serve", "--listen", "0.0.0.0:0", "--auth", "none")
        self.assertEqual(public.returncode, 2, public.stderr)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            in_use = self.atomflow("serve", "--listen", f"127.0.0.1:{port}", "--auth", "none")
        self.assertEqual(in_use.returncode, 2, in_use.stderr)
        self.assertEqual(sorted(os.listdir(self.root)), self.FILES)

    def test_an_empty_store_path_is_named(self):
        done = self.atomflow("executions", "list", "--store", "")
        self.assertEqual(done.returncode, 2)
        self.assertIn("atomflow: --store is empty: give the path of the store file", done.stderr)


class OptionMistakeTest(ClientTestCase):
    """Options the server refuses (an unknown state) or that mean nothing (a negative limit,
    negative workers, a public URL that is no URL) were accepted locally; they exit 2."""

    def test_an_unknown_state_or_a_negative_limit_is_refused(self):
        self.atomflow("run", self.path("hello"))
        for state in ("BOGUS", "failed"):
            listed = self.atomflow("executions", "list", "--state", state)
            self.assertEqual(listed.returncode, 2, listed.stderr)
            self.assertIn(f"unknown state '{state}' (ACTIVE, SUCCEEDED, FAILED, CANCELLED, "
                          "QUEUED)", listed.stderr)
        (succeeded,) = self.json_of("executions", "list", "--state", "SUCCEEDED")
        self.assertEqual(succeeded["state"], "SUCCEEDED")
        limit = self.atomflow("executions", "list", "--limit", "-1")
        self.assertEqual(limit.returncode, 2)
        self.assertIn("--limit: must be 0 or more, not -1", limit.stderr)

    def test_serve_refuses_negative_workers_and_a_public_url_that_is_no_url(self):
        workers = self.atomflow("serve", "--listen", "127.0.0.1:0", "--workers", "-3")
        self.assertEqual(workers.returncode, 2)
        self.assertIn("--workers must be 0 (one per core) or more, not -3", workers.stderr)
        url = self.atomflow("serve", "--listen", "127.0.0.1:0", "--public-url", "notaurl")
        self.assertEqual(url.returncode, 2)
        self.assertIn("--public-url wants an http:// or https:// URL with a host", url.stderr)
        self.assertNotIn("atomflow.db", os.listdir(self.root))

    def test_a_malformed_host_map_stops_the_command(self):
        run = self.atomflow("run", self.path("hello"), env={"ATOMFLOW_HTTP_HOST_MAP": "garbage"})
        self.assertEqual(run.returncode, 2, run.stderr)
        self.assertIn("atomflow: ATOMFLOW_HTTP_HOST_MAP:", run.stderr)
        self.assertNotIn("SUCCEEDED", run.stderr)
        self.assertNotIn("atomflow.db", os.listdir(self.root))

    def test_resolve_of_an_unknown_transaction_says_only_that(self):
        self.atomflow("run", self.path("hello"))
        resolve = self.atomflow("txn", "resolve", "nosuch", "--retry")
        self.assertEqual(resolve.returncode, 2)
        self.assertNotIn("retrying", resolve.stderr)
        self.assertIn("nosuch", resolve.stderr)

    def test_version(self):
        version = self.atomflow("--version")
        self.assertEqual(version.returncode, 0)
        self.assertRegex(version.stdout, r"^atomflow \d+\.\d+\.\d+\n$")


class TransactionWarningTest(ClientTestCase):
    """Regression: a write inside a transaction with neither compensate: nor tcc: is no
    branch (an abort leaves it), yet validate said only 'valid'. It warns, and exits 0."""

    def test_validate_warns_of_a_write_that_is_no_branch(self):
        with open(self.path("release"), "w", encoding="utf-8") as file:
            file.write("- release:\n    transaction:\n      steps:\n        - notify:\n"
                       "            call: http.post\n            args: {url: http://a/n}\n")
        validated = self.atomflow("validate", self.path("release"))
        self.assertEqual(validated.returncode, 0, validated.stderr)
        self.assertIn("release.yaml:5:13: warning: http.post in step 'notify' has neither "
                      "compensate: nor tcc:, so it is no branch of transaction 'release': an "
                      "abort does not undo it", validated.stderr)
        document = self.json_of("validate", self.path("release"))
        self.assertEqual(document["state"], "VALID")
        self.assertEqual(len(document["warnings"]), 1)
        self.assertEqual(self.json_of("validate", self.path("hello")),
                         {"state": "VALID", "file": self.path("hello")})


if __name__ == "__main__":
    unittest.main()

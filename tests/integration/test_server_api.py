"""`atomflow serve` through real HTTP: deploying and revising workflows, running, listing,
filtering and cancelling executions, step entries, logs, callbacks, every rejected input (which
must say what is wrong and change nothing), health and metrics."""

import json
import re
import threading
import unittest

from counting_participant import CountingParticipant
from server_harness import ServerTestCase, execution_id, execution_path

# Succeeds with a greeting, or fails with code 7 when args.fail.
GREET = """
main:
  params: [args]
  steps:
    - check:
        switch:
          - condition: ${args.fail}
            next: fail
    - say:
        call: sys.log
        args:
          text: ${"hello " + args.who}
          severity: WARNING
    - done:
        return:
          greeting: ${"hello " + args.who}
          n: ${args.n}
    - fail:
        raise:
          code: 7
          message: ${"asked to fail for " + args.who}
"""

# deploy is compensated by undeploy; the sleep is where the cancel arrives.
RELEASE = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - deploy:
                call: http.post
                args:
                  url: ${args.url + "/ok/deploy/" + args.tag}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/undeploy/" + args.tag}
            - wait:
                call: sys.sleep
                args:
                  seconds: 120
    - after:
        call: http.post
        args:
          url: ${args.url + "/ok/after/" + args.tag}
    - done:
        return: committed
"""

# Tells the participant its callback URL, is held (so a test can send the callback before the
# await), then awaits the callback and returns its body.
CALLBACK = """
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
          url: ${args.url + "/ok/tell/" + args.tag}
          body:
            url: ${cb.url}
    - pause:
        switch:
          - condition: ${args.hold}
            steps:
              - held:
                  call: http.post
                  args:
                    url: ${args.url + "/hold/" + args.tag}
    - wait:
        call: events.await_callback
        args:
          callback: ${cb}
          timeout: 60
        result: request
    - done:
        return:
          body: ${request.http_request.body}
          method: ${request.http_request.method}
"""

# A transaction that commits after a held call: the transaction is ACTIVE while held.
HELD_TXN = """
main:
  params: [args]
  steps:
    - release:
        transaction:
          steps:
            - deploy:
                call: http.post
                args:
                  url: ${args.url + "/hold/deploy"}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/undeploy"}
    - done:
        return: committed
"""

# A call retried by the language: the participant answers 503 twice, then 200.
FLAKY = """
main:
  params: [args]
  steps:
    - fetch:
        try:
          call: http.get
          args:
            url: ${args.url + "/flaky/2/fetch"}
          result: r
        retry: ${http.default_retry}
    - done:
        return: ${r.body.calls}
"""

REVISION_ID = re.compile(r"^\d{6}-[0-9a-f]{3}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DURATION = re.compile(r"^\d+\.\d{3}s$")


def argument_of_size(size):
    """An argument for GREET whose JSON text is exactly size bytes."""
    frame = json.dumps({"who": "", "n": 1, "fail": False})
    text = json.dumps({"who": "x" * (size - len(frame)), "n": 1, "fail": False})
    assert len(text) == size
    return text


def source_of_size(size):
    """GREET padded with a comment to exactly size bytes."""
    text = GREET + "#" + "x" * (size - len(GREET) - 2) + "\n"
    assert len(text.encode()) == size
    return text


def run_together(count, call):
    """call(k) for k in range(count) from count threads at once; the answers in order."""
    answers = [None] * count
    barrier = threading.Barrier(count)

    def one(k):
        barrier.wait()
        answers[k] = call(k)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def returning(value):
    return f"main:\n  steps:\n    - done:\n        return: {json.dumps(value)}\n"


class ServerApiTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.participant = CountingParticipant()
        self.addCleanup(self.participant.stop)
        self.server = self.start_server()
        self.api = self.server.client()

    # Workflows and revisions.

    def test_deploy_and_revisions(self):
        deployed = self.deploy(self.api, "rev", returning("v1"), description="first",
                               labels={"team": "ml"})
        self.assertEqual(deployed["name"], "workflows/rev")
        self.assertEqual(deployed["state"], "ACTIVE")
        self.assertEqual(deployed["labels"], {"team": "ml"})
        first = deployed["revisionId"]
        self.assertRegex(first, REVISION_ID)
        self.assertTrue(first.startswith("000001-"), first)
        for field in ("createTime", "updateTime", "revisionCreateTime"):
            self.assertRegex(deployed[field], TIME)
        got = self.api.get("/v1/workflows/rev")
        self.assertEqual(got.status, 200, got)
        self.assertEqual((got.body["revisionId"], got.body["sourceContents"]),
                         (first, returning("v1")))

        again = self.api.post("/v1/workflows", {"sourceContents": returning("x")},
                              query={"workflowId": "rev"})
        self.assert_error(again, 409, "ALREADY_EXISTS", "rev")
        self.assertEqual(self.api.get("/v1/workflows/rev").body["sourceContents"],
                         returning("v1"))

        # A description, or the same source again, makes no new revision.
        patched = self.api.patch("/v1/workflows/rev", {"description": "second"})
        self.assertEqual(patched.status, 200, patched)
        self.assertEqual(patched.body["response"]["revisionId"], first)
        self.assertEqual(patched.body["response"]["description"], "second")
        same = self.api.patch("/v1/workflows/rev", {"sourceContents": returning("v1")})
        self.assertEqual(same.status, 200, same)
        self.assertEqual(same.body["response"]["revisionId"], first)
        old_run = self.wait_finished(self.api, self.run_execution(self.api, "rev"))

        changed = self.api.patch("/v1/workflows/rev", {"sourceContents": returning("v2")})
        self.assertEqual(changed.status, 200, changed)
        second = changed.body["response"]["revisionId"]
        self.assertRegex(second, REVISION_ID)
        self.assertTrue(second.startswith("000002-"), second)
        self.assertEqual(changed.body["response"]["description"], "second")

        revisions = self.api.get("/v1/workflows/rev:listRevisions")
        self.assertEqual(revisions.status, 200, revisions)
        self.assertEqual([w["revisionId"] for w in revisions.body["workflows"]],
                         [second, first])
        self.assertEqual(self.list_all(self.api, "/v1/workflows/rev:listRevisions", "workflows",
                                       page_size=1), revisions.body["workflows"])
        old = self.api.get("/v1/workflows/rev", query={"revisionId": first})
        self.assertEqual(old.status, 200, old)
        self.assertEqual(old.body["sourceContents"], returning("v1"))
        missing = self.api.get("/v1/workflows/rev", query={"revisionId": "000009-abc"})
        self.assert_error(missing, 404, "NOT_FOUND")

        # Executions run the latest revision and remember theirs.
        new_run = self.wait_finished(self.api, self.run_execution(self.api, "rev"))
        self.assertEqual((json.loads(old_run["result"]), old_run["workflowRevisionId"]),
                         ("v1", first))
        self.assertEqual((json.loads(new_run["result"]), new_run["workflowRevisionId"]),
                         ("v2", second))

        # updateMask takes only the fields it names.
        masked = self.api.patch("/v1/workflows/rev", {"description": "third",
                                                      "sourceContents": returning("v3")},
                                query={"updateMask": "description"})
        self.assertEqual(masked.status, 200, masked)
        self.assertEqual(masked.body["response"]["revisionId"], second)
        self.assertEqual(masked.body["response"]["description"], "third")
        self.assertEqual(self.api.get("/v1/workflows/rev").body["sourceContents"],
                         returning("v2"))

        # Google's long resource prefix is accepted.
        prefixed = self.api.get("/v1/projects/p1/locations/here/workflows/rev")
        self.assertEqual(prefixed.status, 200, prefixed)
        self.assertEqual(prefixed.body["revisionId"], second)

        # Delete removes the workflow; its executions stay readable.
        self.deploy(self.api, "other", returning(1))
        self.assertEqual([w["name"] for w in self.list_all(self.api, "/v1/workflows",
                                                           "workflows")],
                         ["workflows/other", "workflows/rev"])
        self.assertEqual(self.list_all(self.api, "/v1/workflows", "workflows", page_size=1),
                         self.list_all(self.api, "/v1/workflows", "workflows"))
        deleted = self.api.delete("/v1/workflows/rev")
        self.assertEqual(deleted.status, 200, deleted)
        self.assert_error(self.api.get("/v1/workflows/rev"), 404, "NOT_FOUND")
        self.assertEqual(self.get_execution(self.api, old_run)["state"], "SUCCEEDED")
        self.assertEqual([w["name"] for w in self.list_all(self.api, "/v1/workflows",
                                                           "workflows")],
                         ["workflows/other"])
        self.assert_error(self.api.delete("/v1/workflows/rev"), 404, "NOT_FOUND")
        self.assert_error(self.api.patch("/v1/workflows/rev", {"description": "x"}), 404,
                          "NOT_FOUND")
        self.assert_error(self.api.post("/v1/workflows/rev/executions", {}), 404, "NOT_FOUND")

    # Executions.

    def test_run_succeeds_with_result_and_fails_with_error(self):
        workflow = self.deploy(self.api, "greet", GREET)
        started = self.run_execution(self.api, "greet", {"who": "ada", "n": 1, "fail": False},
                                     labels={"run": "one"})
        self.assertIn(started["state"], ("ACTIVE", "SUCCEEDED"))
        self.assertTrue(started["name"].startswith("workflows/greet/executions/"), started)
        done = self.wait_finished(self.api, started)

        self.assertEqual(done["state"], "SUCCEEDED", done)
        self.assertEqual(json.loads(done["result"]), {"greeting": "hello ada", "n": 1})
        self.assertEqual(json.loads(done["argument"]), {"who": "ada", "n": 1, "fail": False})
        self.assertEqual(done["workflowRevisionId"], workflow["revisionId"])
        self.assertEqual(done["labels"], {"run": "one"})
        self.assertRegex(done["startTime"], TIME)
        self.assertRegex(done["endTime"], TIME)
        self.assertLessEqual(done["startTime"], done["endTime"])
        self.assertRegex(done["duration"], DURATION)

        failed = self.wait_finished(self.api, self.run_execution(
            self.api, "greet", {"who": "bob", "n": 2, "fail": True}))
        self.assertEqual(failed["state"], "FAILED", failed)
        payload = json.loads(failed["error"]["payload"])
        self.assertEqual(payload.get("code"), 7, payload)
        self.assertIn("asked to fail for bob", failed["error"]["payload"])
        self.assertFalse(failed.get("result"), failed)

        self.assert_error(self.api.post("/v1/workflows/nope/executions", {}), 404, "NOT_FOUND")
        self.assert_error(self.api.get("/v1/workflows/greet/executions/no-such-id"), 404,
                          "NOT_FOUND")

    def test_step_entries_and_logs(self):
        self.deploy(self.api, "greet", GREET)
        done = self.wait_finished(self.api, self.run_execution(
            self.api, "greet", {"who": "ada", "n": 1, "fail": False}))
        path = execution_path(done)

        entries = self.list_all(self.api, path + "/stepEntries", "stepEntries")
        self.assertEqual([(e["routine"], e["step"]) for e in entries],
                         [("main", "check"), ("main", "say"), ("main", "done")], entries)
        for entry in entries:
            self.assertEqual(entry["state"], "STATE_SUCCEEDED", entry)
            self.assertRegex(entry["createTime"], TIME)
            self.assertRegex(entry["updateTime"], TIME)
            self.assertLessEqual(entry["createTime"], entry["updateTime"])
            self.assertEqual(entry["name"], f"{done['name']}/stepEntries/{entry['entryId']}")
        self.assertEqual(entries, self.list_all(self.api, path + "/stepEntries",
                                                "stepEntries", page_size=1))
        one = self.api.get(f"{path}/stepEntries/{entries[1]['entryId']}")
        self.assertEqual(one.status, 200, one)
        self.assertEqual(one.body, entries[1])
        self.assert_error(self.api.get(path + "/stepEntries/999"), 404, "NOT_FOUND")

        logs = self.api.get(path + "/logs")
        self.assertEqual(logs.status, 200, logs)
        self.assertEqual([(e["severity"], e["step"], e["text"]) for e in logs.body["entries"]],
                         [("WARNING", "say", "hello ada")], logs)
        self.assertRegex(logs.body["entries"][0]["time"], TIME)

        failed = self.wait_finished(self.api, self.run_execution(
            self.api, "greet", {"who": "bob", "n": 2, "fail": True}))
        entries = self.list_all(self.api, execution_path(failed) + "/stepEntries",
                                "stepEntries")
        self.assertEqual([e["step"] for e in entries], ["check", "fail"], entries)
        self.assertEqual(entries[-1]["state"], "STATE_FAILED", entries)
        self.assertIn("exception", entries[-1], "a failed step entry carries its error")
        self.assertIn("asked to fail for bob", entries[-1]["exception"]["payload"])

    def test_list_pages_newest_first_and_filters(self):
        self.deploy(self.api, "greet", GREET)
        started = []
        for n in range(10):
            started.append(self.run_execution(
                self.api, "greet", {"who": f"w{n}", "n": n, "fail": n in (2, 5, 8)}))
        finished = [self.wait_finished(self.api, execution) for execution in started]
        by_name = {execution["name"]: execution for execution in finished}

        pages, token = [], None
        while True:
            query = {"pageSize": "3"}
            if token:
                query["pageToken"] = token
            page = self.api.get("/v1/workflows/greet/executions", query=query)
            self.assertEqual(page.status, 200, page)
            pages.append([e["name"] for e in page.body["executions"]])
            token = page.body.get("nextPageToken")
            if not token:
                break
            self.assertLess(len(pages), 10, "paging does not end")
        self.assertEqual([len(page) for page in pages], [3, 3, 3, 1], pages)
        listed = [name for page in pages for name in page]
        self.assertEqual(sorted(listed), sorted(by_name), "each execution exactly once")
        times = [by_name[name]["startTime"] for name in listed]
        self.assertEqual(times, sorted(times, reverse=True), "newest first")

        failed = self.list_all(self.api, "/v1/workflows/greet/executions", "executions",
                               query={"filter": 'state="FAILED"'})
        expected_failed = {e["name"] for e in finished if e["state"] == "FAILED"}
        self.assertEqual(len(expected_failed), 3)
        self.assertEqual({e["name"] for e in failed}, expected_failed)

        pivot = sorted(e["startTime"] for e in finished)[4]
        later = self.list_all(self.api, "/v1/workflows/greet/executions", "executions",
                              query={"filter": f'startTime>"{pivot}"'}, page_size=2)
        self.assertEqual({e["name"] for e in later},
                         {e["name"] for e in finished if e["startTime"] > pivot})
        both = self.list_all(self.api, "/v1/workflows/greet/executions", "executions",
                             query={"filter": f'state="SUCCEEDED" AND startTime<="{pivot}"'})
        self.assertEqual({e["name"] for e in both},
                         {e["name"] for e in finished
                          if e["state"] == "SUCCEEDED" and e["startTime"] <= pivot})

    def test_cancel_inside_a_transaction_runs_the_compensation(self):
        self.deploy(self.api, "release", RELEASE)
        started = self.run_execution(self.api, "release",
                                     {"url": self.participant.url, "tag": "c1"})
        self.assertTrue(self.participant.wait_for("/ok/deploy/c1"), "the deploy never came")
        self.wait_until(lambda: self.current_step(started) == "wait", "the sleep to begin")

        cancelled = self.api.post(execution_path(started) + ":cancel")
        self.assertEqual(cancelled.status, 200, cancelled)
        done = self.wait_finished(self.api, started)

        self.assertEqual(done["state"], "CANCELLED", done)
        paths = self.participant.paths()
        # libcurl sends a request again, under the same key, when a kept-alive connection it
        # reused turns out closed by the participant; the effect still lands once.
        self.assertEqual(self.participant.applications("/ok/deploy/c1"), 1)
        self.assertEqual(len({r.key for r in self.participant.requests_to("/ok/deploy/c1")}), 1)
        self.assertEqual(self.participant.applications("/ok/undeploy/c1"), 1)
        self.assertEqual([r.op for r in self.participant.requests_to("/ok/undeploy/c1")][0],
                         "compensate")
        self.assertEqual(paths["/ok/after/c1"], 0, "a cancelled execution went on")
        transactions = self.api.get(execution_path(started) + "/transactions")
        self.assertEqual(transactions.status, 200, transactions)
        self.assertEqual([t["state"] for t in transactions.body["transactions"]], ["ABORTED"])
        again = self.api.post(execution_path(started) + ":cancel")
        self.assert_error(again, 409, "FAILED_PRECONDITION")

    def current_step(self, execution):
        steps = self.get_execution(self.api, execution).get("status", {}).get(
            "currentSteps", [])
        return steps[-1]["step"] if steps else None

    # Callbacks.

    def test_callback_delivers_its_body(self):
        self.deploy(self.api, "cb", CALLBACK)
        started = self.run_execution(self.api, "cb", {"url": self.participant.url,
                                                      "tag": "t1", "hold": False})
        url = self.callback_url("t1")
        self.assertTrue(url.startswith(self.server.url + "/v1/workflows/cb/executions/"
                                       + execution_id(started) + "/callbacks/"), url)
        self.wait_until(lambda: self.waiters(started) == 1, "the await to begin")

        sent = self.api.request("POST", url[len(self.server.url):],
                                body={"answer": 42, "who": "ops"})
        self.assertEqual(sent.status, 200, sent)
        done = self.wait_finished(self.api, started)
        self.assertEqual(done["state"], "SUCCEEDED", done)
        self.assertEqual(json.loads(done["result"]),
                         {"body": {"answer": 42, "who": "ops"}, "method": "POST"})

        # The execution has finished: a late callback is refused and changes nothing.
        late = self.api.request("POST", url[len(self.server.url):], body={"answer": 0})
        self.assert_error(late, 409, "FAILED_PRECONDITION")

    def test_callback_sent_before_the_await_is_not_lost(self):
        self.deploy(self.api, "cb", CALLBACK)
        started = self.run_execution(self.api, "cb", {"url": self.participant.url,
                                                      "tag": "t2", "hold": True})
        url = self.callback_url("t2")
        self.assertTrue(self.participant.wait_for("/hold/t2"), "the held call never came")

        sent = self.api.request("POST", url[len(self.server.url):], body={"early": True})
        self.assertEqual(sent.status, 200, sent)
        callbacks = self.api.get(execution_path(started) + "/callbacks")
        self.assertEqual(callbacks.status, 200, callbacks)
        self.assertEqual([c["method"] for c in callbacks.body["callbacks"]], ["POST"])
        self.assertEqual(self.get_execution(self.api, started)["state"], "ACTIVE")
        wrong = self.api.post(execution_path(started) + "/callbacks/no-such-callback", {})
        self.assert_error(wrong, 404, "NOT_FOUND")
        self.participant.release()

        done = self.wait_finished(self.api, started)
        self.assertEqual(done["state"], "SUCCEEDED", done)
        self.assertEqual(json.loads(done["result"]), {"body": {"early": True},
                                                      "method": "POST"})

    def callback_url(self, tag):
        self.assertTrue(self.participant.wait_for("/ok/tell/" + tag), "no callback URL came")
        return self.participant.requests_to("/ok/tell/" + tag)[0].body["url"]

    def waiters(self, execution):
        answer = self.api.get(execution_path(execution) + "/callbacks")
        self.assertEqual(answer.status, 200, answer)
        return sum(c.get("waiters", 0) for c in answer.body["callbacks"])

    # Rejected input.

    def test_every_rejected_input_says_why_and_changes_nothing(self):
        self.deploy(self.api, "greet", GREET)
        self.wait_finished(self.api, self.run_execution(
            self.api, "greet", {"who": "ada", "n": 1, "fail": False}))
        before = self.store_view()
        source = GREET
        big_source = source + "#" + "x" * (128 * 1024) + "\n"
        big_argument = json.dumps({"who": "x" * (32 * 1024), "n": 1, "fail": False})

        cases = [
            ("deploy, malformed body", "POST", "/v1/workflows?workflowId=new1", None,
             b'{"sourceContents": "main:', ["json"]),
            ("deploy, unknown field", "POST", "/v1/workflows?workflowId=new2",
             {"sourceContents": source, "colour": "red"}, None, ["colour"]),
            ("deploy, source over 128 KiB", "POST", "/v1/workflows?workflowId=new3",
             {"sourceContents": big_source}, None, ["sourceContents"]),
            ("deploy, invalid source", "POST", "/v1/workflows?workflowId=new4",
             {"sourceContents": "main:\n  steps:\n    - a:\n        call: htp.post\n"
                                "        args:\n          url: x\n"}, None,
             ["4:9", "htp.post"]),
            ("deploy, bad name", "POST", "/v1/workflows?workflowId=9-lives",
             {"sourceContents": source}, None, ["9-lives"]),
            ("deploy, labels not strings", "POST", "/v1/workflows?workflowId=new5",
             {"sourceContents": source, "labels": {"a": 1}}, None, ["label"]),
            ("deploy, unknown query parameter", "POST",
             "/v1/workflows?workflowId=new6&colour=red", {"sourceContents": source}, None,
             ["colour"]),
            ("patch, unknown field", "PATCH", "/v1/workflows/greet",
             {"sourceContents": returning(1), "colour": "red"}, None, ["colour"]),
            ("patch, source over 128 KiB", "PATCH", "/v1/workflows/greet",
             {"sourceContents": big_source}, None, ["sourceContents"]),
            ("patch, invalid source", "PATCH", "/v1/workflows/greet",
             {"sourceContents": "main: [\n"}, None, ["1:"]),
            ("run, malformed body", "POST", "/v1/workflows/greet/executions", None,
             b'{"argument": ', ["json"]),
            ("run, unknown field", "POST", "/v1/workflows/greet/executions",
             {"argument": "{}", "priority": 1}, None, ["priority"]),
            ("run, argument over 32 KiB", "POST", "/v1/workflows/greet/executions",
             {"argument": big_argument}, None, ["argument"]),
            ("run, argument not JSON text", "POST", "/v1/workflows/greet/executions",
             {"argument": "{who: ada"}, None, ["argument"]),
            ("run, argument not a string", "POST", "/v1/workflows/greet/executions",
             {"argument": {"who": "ada"}}, None, ["argument"]),
            ("run, labels not strings", "POST", "/v1/workflows/greet/executions",
             {"argument": "{}", "labels": {"team": 7}}, None, ["label"]),
            ("run, unknown query parameter", "POST",
             "/v1/workflows/greet/executions?colour=red", {"argument": "{}"}, None,
             ["colour"]),
            ("list, unknown query parameter", "GET", "/v1/workflows/greet/executions?colour=1",
             None, None, ["colour"]),
            ("list, malformed filter", "GET",
             "/v1/workflows/greet/executions?filter=state%3D%3D", None, None, ["filter"]),
            ("list, unknown filter field", "GET",
             "/v1/workflows/greet/executions?filter=colour%3D%22red%22", None, None,
             ["colour"]),
            ("list, bad page token", "GET",
             "/v1/workflows/greet/executions?pageToken=garbage", None, None, ["pageToken"]),
        ]
        for what, method, path, body, raw, words in cases:
            with self.subTest(what):
                answer = self.api.request(method, path, body=body, raw=raw)
                self.assert_error(answer, 400, "INVALID_ARGUMENT", *words)
                self.assertEqual(self.store_view(), before, f"{what} changed the store")

        with self.subTest("body over 256 KiB"):
            huge = {"sourceContents": source, "description": "d" * (300 * 1024)}
            answer = self.api.post("/v1/workflows", huge, query={"workflowId": "new7"})
            self.assertIn(answer.status, (400, 413), answer)
            self.assertEqual(self.store_view(), before)

        # One byte over each limit is refused; exactly at the limit is accepted.
        over = self.api.post("/v1/workflows/greet/executions",
                             {"argument": argument_of_size(32 * 1024 + 1)})
        self.assert_error(over, 400, "INVALID_ARGUMENT", "argument")
        over = self.api.post("/v1/workflows", {"sourceContents": source_of_size(128 * 1024 + 1)},
                             query={"workflowId": "padded"})
        self.assert_error(over, 400, "INVALID_ARGUMENT", "sourceContents")
        self.assertEqual(self.store_view(), before)
        ran = self.api.post("/v1/workflows/greet/executions",
                            {"argument": argument_of_size(32 * 1024)})
        self.assertEqual(ran.status, 200, ran)
        self.assertEqual(self.wait_finished(self.api, ran.body)["state"], "SUCCEEDED")
        deployed = self.api.post("/v1/workflows", {"sourceContents": source_of_size(128 * 1024)},
                                 query={"workflowId": "padded"})
        self.assertEqual(deployed.status, 200, deployed)

    def test_concurrent_deploys_and_cancels_take_effect_once(self):
        answers = run_together(8, lambda k: self.api.post(
            "/v1/workflows", {"sourceContents": returning(k)}, query={"workflowId": "race"}))
        self.assertEqual(sorted(a.status for a in answers), [200] + [409] * 7, answers)
        revisions = self.list_all(self.api, "/v1/workflows/race:listRevisions", "workflows")
        self.assertEqual(len(revisions), 1, revisions)

        self.deploy(self.api, "release", RELEASE)
        started = self.run_execution(self.api, "release",
                                     {"url": self.participant.url, "tag": "r1"})
        self.assertTrue(self.participant.wait_for("/ok/deploy/r1"), "the deploy never came")
        answers = run_together(6, lambda k: self.api.post(execution_path(started) + ":cancel"))
        self.assertIn(200, [a.status for a in answers], answers)
        self.assertTrue(all(a.status in (200, 409) for a in answers), answers)
        done = self.wait_finished(self.api, started)
        self.assertEqual(done["state"], "CANCELLED", done)
        self.assertEqual(self.participant.applications("/ok/undeploy/r1"), 1)
        self.assertEqual(self.participant.count("/ok/after/r1"), 0)
        self.assert_error(self.api.post("/v1/workflows/release/executions/nope:cancel"), 404,
                          "NOT_FOUND")

    def store_view(self):
        """What the API shows of the store: workflows, revisions and executions."""
        workflows = self.list_all(self.api, "/v1/workflows", "workflows")
        view = {"workflows": workflows}
        for workflow in workflows:
            name = workflow["name"].split("/")[-1]
            view[name + " revisions"] = self.list_all(
                self.api, f"/v1/workflows/{name}:listRevisions", "workflows")
            view[name + " executions"] = self.list_all(
                self.api, f"/v1/workflows/{name}/executions", "executions")
        return view

    # Health and metrics.

    def test_health_and_metrics(self):
        self.assertEqual(self.api.get("/healthz").status, 200)
        # Ready once the recovery that runs beside the listener has finished.
        self.wait_until(lambda: self.api.get("/readyz").status == 200, "readiness")
        self.deploy(self.api, "held", HELD_TXN)
        self.deploy(self.api, "flaky", FLAKY)
        held = self.run_execution(self.api, "held", {"url": self.participant.url})
        self.assertTrue(self.participant.wait_for("/hold/deploy"))

        during = self.scrape()
        self.assertGreaterEqual(during.get(("atomflow_executions", (("state", "ACTIVE"),)),
                                           0), 1, during)
        self.assertGreaterEqual(during.get(("atomflow_transactions", (("state", "ACTIVE"),)),
                                           0), 1, during)
        self.assertIn(("atomflow_transaction_oldest_age_seconds", (("state", "ACTIVE"),)),
                      during)

        self.participant.release()
        self.assertEqual(self.wait_finished(self.api, held)["state"], "SUCCEEDED")
        flaky = self.wait_finished(self.api, self.run_execution(
            self.api, "flaky", {"url": self.participant.url}))
        self.assertEqual((flaky["state"], flaky.get("result")), ("SUCCEEDED", "3"), flaky)

        # The transaction gauges may be cached for a few seconds: poll.
        after = self.wait_until(lambda: self.scrape_when(
            ("atomflow_transactions", (("state", "COMMITTED"),)), 1), "the commit in /metrics",
            timeout=30, interval=0.5)
        self.assertGreaterEqual(after[("atomflow_executions", (("state", "SUCCEEDED"),))], 2)
        self.assertEqual(after[("atomflow_transactions", (("state", "ACTIVE"),))], 0)
        self.assertGreater(after[("atomflow_steps_total", ())], 0)
        self.assertGreater(after[("atomflow_journal_commit_seconds_count", ())], 0)
        self.assertIn(("atomflow_journal_commit_seconds_bucket", (("le", "+Inf"),)), after)
        retries = sum(value for (name, labels), value in after.items()
                      if name == "atomflow_retries_total"
                      and "127.0.0.1" in dict(labels).get("host", ""))
        self.assertEqual(retries, 2, after)
        self.assertGreater(after.get(("atomflow_http_requests_total", (("code", "200"),)),
                                     0), 0, after)
        text = self.api.get("/metrics").text
        for name, kind in [("atomflow_executions", "gauge"),
                           ("atomflow_steps_total", "counter"),
                           ("atomflow_journal_commit_seconds", "histogram"),
                           ("atomflow_transactions", "gauge"),
                           ("atomflow_retries_total", "counter"),
                           ("atomflow_http_requests_total", "counter")]:
            self.assertIn(f"# TYPE {name} {kind}", text)

    def scrape_when(self, sample, at_least):
        """The scrape when sample has reached at_least, else None."""
        samples = self.scrape()
        return samples if samples.get(sample, 0) >= at_least else None

    def scrape(self):
        """/metrics as {(name, ((label, value), ...)): value}."""
        answer = self.api.get("/metrics")
        self.assertEqual(answer.status, 200, answer)
        samples = {}
        pattern = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
        for line in answer.text.splitlines():
            match = pattern.match(line)
            if not match or line.startswith("#"):
                continue
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or "")))
            samples[(match.group(1), labels)] = float(match.group(4))
        return samples


if __name__ == "__main__":
    unittest.main()

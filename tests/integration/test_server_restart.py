"""`atomflow serve` killed with a thousand executions in flight (SIGKILL) and drained (SIGTERM):
after a restart on the same store every execution finishes, once, and the participant applied
each HTTP call's effect exactly once.

The participant counts every request by its Idempotency-Key. Before the kill it freezes its
answers and waits until every answer it already gave is in atomflow's journal; so the requests
it holds at the kill are exactly the calls in flight, and only those may arrive twice."""

import collections
import json
import os
import signal
import threading
import time
import unittest

from counting_participant import CountingParticipant
from server_harness import ServerTestCase, execution_id, journal_rows

EXECUTIONS = int(os.environ.get("ATOMFLOW_RESTART_EXECUTIONS", "1000"))
CALLS = 4  # HTTP actions per execution: first, reserve, publish, last
# The shares of all calls the participant has seen when the server is killed: once in the
# middle, and again after the restart while it recovers and runs what the first left.
KILLS_AT = (0.4, 0.7)
FINISH_TIMEOUT = 150  # seconds for every execution to finish after the restart

# One call, a nap that spreads the executions out, a transaction of two compensable calls
# (one slow; every tenth execution's publish is refused with a 409, so its transaction aborts
# and the reserve is compensated), and a slow last call.
WORKFLOW = """
main:
  params: [args]
  steps:
    - first:
        call: http.post
        args:
          url: ${args.url + "/ok/first/" + args.tag}
          body: {n: '${args.n}'}
        result: a
    - nap:
        call: sys.sleep
        args:
          seconds: ${args.nap}
    - release:
        transaction:
          steps:
            - reserve:
                call: http.post
                args:
                  url: ${args.url + "/slow/0.2/reserve/" + args.tag}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/unreserve/" + args.tag}
            - publish:
                call: http.post
                args:
                  url: ${args.url + args.publish + args.tag}
                compensate:
                  call: http.post
                  args:
                    url: ${args.url + "/ok/unpublish/" + args.tag}
    - last:
        call: http.post
        args:
          url: ${args.url + "/slow/0.1/last/" + args.tag}
        result: z
    - done:
        return:
          n: ${args.n}
          tag: ${args.tag}
"""

REFUSED_EVERY = 10  # every tenth execution's publish gets a 409


def calls_of(n):
    """The paths execution n must have applied once, and those it must never call."""
    tag = f"e{n}"
    if n % REFUSED_EVERY == 0:
        return ([f"/ok/first/{tag}", f"/slow/0.2/reserve/{tag}", f"/conflict/publish/{tag}",
                 f"/ok/unreserve/{tag}"], [f"/ok/unpublish/{tag}", f"/slow/0.1/last/{tag}"])
    return ([f"/ok/first/{tag}", f"/slow/0.2/reserve/{tag}", f"/ok/publish/{tag}",
             f"/slow/0.1/last/{tag}"], [f"/ok/unreserve/{tag}", f"/ok/unpublish/{tag}"])

# A slow call that is in flight at the SIGTERM (the drain waits for its answer), then a sleep
# the drain does not wait out: it must resume after the restart.
NAPPING = """
main:
  params: [args]
  steps:
    - before:
        call: http.post
        args:
          url: ${args.url + "/slow/1/before/" + args.tag}
    - nap:
        call: sys.sleep
        args:
          seconds: 8
    - after:
        call: http.post
        args:
          url: ${args.url + "/ok/after/" + args.tag}
    - done:
        return: ${args.tag}
"""


# Tells the participant its callback URL, is held (the callback arrives meanwhile), then awaits
# the callback and returns its body.
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
          url: ${args.url + "/ok/tell"}
          body:
            url: ${cb.url}
    - held:
        call: http.post
        args:
          url: ${args.url + "/hold/held"}
    - wait:
        call: events.await_callback
        args:
          callback: ${cb}
          timeout: 60
        result: request
    - done:
        return: ${request.http_request.body}
"""


# Cancelled while it sleeps inside its transaction; its compensation is held by the
# participant, so it is in flight when the server is killed.
CANCELLED = """
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
                    url: ${args.url + "/hold/undeploy"}
            - wait:
                call: sys.sleep
                args:
                  seconds: 120
    - after:
        call: http.post
        args:
          url: ${args.url + "/ok/after"}
"""


class ServerRestartTest(ServerTestCase):

    def setUp(self):
        super().setUp()
        self.participant = CountingParticipant()
        self.addCleanup(self.participant.stop)
        self.kill_times = []

    def start_many(self, client, workflow, arguments, threads=4):
        """Starts one execution per argument through the API; returns them in order."""
        started = [None] * len(arguments)
        failures = []

        def worker(indexes):
            for index in indexes:
                answer = client.post(f"/v1/workflows/{workflow}/executions",
                                     {"argument": json.dumps(arguments[index])})
                if answer.status != 200:
                    failures.append(answer)
                    return
                started[index] = answer.body

        workers = [threading.Thread(target=worker, args=(range(k, len(arguments), threads),))
                   for k in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        self.assertEqual(failures, [], "starting executions failed")
        return started

    def wait_none_active(self, client, workflow, timeout=FINISH_TIMEOUT):
        def none_active():
            answer = client.get(f"/v1/workflows/{workflow}/executions",
                                query={"filter": 'state="ACTIVE"', "pageSize": "1"})
            self.assertEqual(answer.status, 200, answer)
            return not answer.body.get("executions")
        self.wait_until(none_active, "every execution to finish", timeout=timeout, interval=0.5)

    def journaled_keys(self):
        """Idempotency keys (execution id / effect key) whose results are in the journal."""
        rows = journal_rows(self.store, "SELECT execution_id, key FROM journal_entries "
                                        "WHERE kind = 'result'")
        return {f"{execution}/{key}" for execution, key in rows}

    def freeze_and_kill(self, server):
        """Holds the participant's answers, waits until every answer it gave is journaled,
        kills the server (SIGKILL) and returns the requests it held: the calls in flight."""
        self.participant.freeze()
        deadline = time.monotonic() + 60
        while True:
            answered = self.participant.answered_keys()
            missing = answered - self.journaled_keys() if self.participant.settled() else None
            if missing == set():
                break
            if time.monotonic() > deadline:
                self.fail(f"{len(missing or [])} answered calls never reached the journal, "
                          f"e.g. {sorted(missing or [])[:3]}")
            time.sleep(0.1)
        # Nothing is answered while frozen, so what is unanswered once the process is gone is
        # exactly what was in flight (requests may arrive until the very end).
        self.assertEqual(server.kill(), -signal.SIGKILL)
        self.kill_times.append(round(time.monotonic(), 3))
        # Requests the process wrote just before it died may still sit in the participant's
        # socket buffers: wait until nothing new has come in for a while before counting.
        seen = -1
        while seen != self.participant.count():
            seen = self.participant.count()
            time.sleep(0.5)
        in_flight = self.participant.unanswered()
        self.participant.thaw()
        return in_flight

    def test_sigkill_with_a_thousand_executions_in_flight(self):
        server = self.start_server(log_format="json")
        api = server.client()
        self.deploy(api, "work", WORKFLOW)
        arguments = [{"url": self.participant.url, "tag": f"e{n}", "n": n,
                      "nap": (n % 25) * 0.25,
                      "publish": "/conflict/publish/" if n % REFUSED_EVERY == 0 else "/ok/publish/"}
                     for n in range(EXECUTIONS)]
        started = self.start_many(api, "work", arguments)
        total = EXECUTIONS * CALLS
        in_flight, report = [], []
        for share in KILLS_AT:
            self.assertTrue(self.participant.wait_for("/", int(total * share), timeout=120),
                            f"the participant saw only {self.participant.count()} calls")
            held = self.freeze_and_kill(server)
            in_flight.append(held)
            seen = self.participant.count()
            self.assertLess(seen, total, "every call was made before the kill: nothing to test")
            active = [row for row in journal_rows(
                self.store, "SELECT id FROM executions WHERE state = 'ACTIVE'")]
            self.assertTrue(active, "no execution was in flight at the kill")
            report.append(f"killed after {seen} of {total} calls with {len(active)} executions "
                          f"ACTIVE and {len(held)} calls in flight")
            server.start()
        api = server.client()
        self.wait_none_active(api, "work")
        executions = self.list_all(api, "/v1/workflows/work/executions", "executions")
        refused = len(range(0, EXECUTIONS, REFUSED_EVERY))
        states = collections.Counter(e["state"] for e in executions)
        self.assertEqual(states, {"SUCCEEDED": EXECUTIONS - refused, "FAILED": refused}, states)
        self.assertEqual(sorted(e["name"] for e in executions),
                         sorted(e["name"] for e in started))
        for execution in executions:
            argument = json.loads(execution["argument"])
            if argument["n"] % REFUSED_EVERY == 0:
                self.assertIn("TransactionAborted", execution["error"]["payload"], execution)
            else:
                self.assertEqual(json.loads(execution["result"]),
                                 {"n": argument["n"], "tag": argument["tag"]})

        self.assert_applied_once(in_flight)
        self.assert_finished_once(server, started, {row[0] for row in active})
        repeats = sum(c - 1 for c in self.participant.counts_by_key().values())
        print("\n" + "; ".join(report) + f"; {repeats} calls sent again")

    def assert_applied_once(self, in_flights):
        """Every call's effect applied once (the compensation of an aborted transaction
        included), nothing else called, and only the calls held at the kill arrived a second
        time (with the same key)."""
        problems = []
        paths = self.participant.paths()
        for n in range(EXECUTIONS):
            once, never = calls_of(n)
            for path in once:
                if self.participant.applications(path) != 1:
                    problems.append((path, self.participant.applications(path)))
            for path in never:
                if paths[path]:
                    problems.append((path, "called"))
        self.assertEqual(problems[:20], [], f"{len(problems)} effects not applied once")

        held = collections.Counter(r.key for in_flight in in_flights for r in in_flight)
        repeats = {key: count for key, count in self.participant.counts_by_key().items()
                   if count > 1}
        unexpected = [(key, [r for r in self.participant.snapshot() if r.key == key])
                      for key, count in repeats.items() if count - 1 > held[key]]
        self.assertEqual(unexpected, [], "calls made again more often than they were in flight "
                                         f"at a kill (kills at t={self.kill_times})")
        extra = sum(count - 1 for count in repeats.values())
        self.assertLessEqual(extra, sum(held.values()))
        self.assertEqual(len(self.participant.counts_by_key()), EXECUTIONS * CALLS)

    def assert_finished_once(self, server, started, active_at_kill):
        """No execution's end is logged twice over the two processes; each that was ACTIVE at
        the kill is logged as finished exactly once (by the second process)."""
        finished = collections.Counter()
        for event in server.log_events():
            if event.get("message") == "execution.finished" or \
                    event.get("event") == "execution.finished":
                finished[event.get("execution")] += 1
        ids = {execution_id(e) for e in started}
        self.assertEqual([key for key, count in finished.items() if key in ids and count > 1],
                         [], "executions that finished twice")
        self.assertEqual([key for key in active_at_kill if finished[key] != 1], [],
                         "executions ACTIVE at the kill whose end was not logged once")

    def test_sigterm_drains_and_the_restart_finishes_everything(self):
        server = self.start_server()
        api = server.client()
        self.deploy(api, "nap", NAPPING)
        count = 20
        started = self.start_many(api, "nap", [{"url": self.participant.url, "tag": f"d{n}"}
                                               for n in range(count)])
        self.assertTrue(self.participant.wait_for("/slow/1/before/", count))

        self.assertEqual(server.stop(), 0, server.log_text()[-3000:])
        states = collections.Counter(row[0] for row in journal_rows(
            self.store, "SELECT state FROM executions"))
        self.assertEqual(states, {"ACTIVE": count}, "the drain should leave the naps ACTIVE")
        self.assertEqual(self.participant.count("/ok/after/"), 0)

        server.start()
        api = server.client()
        self.wait_none_active(api, "nap")
        executions = self.list_all(api, "/v1/workflows/nap/executions", "executions")
        self.assertEqual(collections.Counter(e["state"] for e in executions),
                         {"SUCCEEDED": count})
        self.assertEqual(sorted(e["name"] for e in executions),
                         sorted(e["name"] for e in started))
        # The drain waited for the slow calls' answers: none is made again.
        for n in range(count):
            self.assertEqual(self.participant.paths()[f"/slow/1/before/d{n}"], 1)
            self.assertEqual(self.participant.applications(f"/ok/after/d{n}"), 1)

    def test_a_callback_answered_200_survives_a_sigkill(self):
        server = self.start_server()
        api = server.client()
        self.deploy(api, "cb", CALLBACK)
        started = self.run_execution(api, "cb", {"url": self.participant.url})
        self.assertTrue(self.participant.wait_for("/hold/held"), "the held call never came")
        url = self.participant.requests_to("/ok/tell")[0].body["url"]

        sent = api.request("POST", url[len(server.url):], body={"approved": True})
        self.assertEqual(sent.status, 200, sent)
        self.assertEqual(server.kill(), -signal.SIGKILL)
        self.participant.release()

        server.start()
        done = self.wait_finished(server.client(), started)
        self.assertEqual(done["state"], "SUCCEEDED", done)
        self.assertEqual(json.loads(done["result"]), {"approved": True})
        self.assertEqual(self.participant.applications("/ok/tell"), 1)
        self.assertEqual(self.participant.applications("/hold/held"), 1)

    def test_a_cancel_cut_off_by_sigkill_is_finished_after_the_restart(self):
        server = self.start_server()
        api = server.client()
        self.deploy(api, "cancelled", CANCELLED)
        started = self.run_execution(api, "cancelled", {"url": self.participant.url})
        self.assertTrue(self.participant.wait_for("/ok/deploy"), "the deploy never came")
        cancel = api.post(f"/v1/{started['name']}:cancel")
        self.assertEqual(cancel.status, 200, cancel)
        self.assertTrue(self.participant.wait_for("/hold/undeploy"), "no compensation came")
        self.assertEqual(server.kill(), -signal.SIGKILL)
        self.participant.release()

        server.start()
        api = server.client()
        self.wait_until(lambda: api.get("/readyz").status == 200, "the server to be ready")
        done = self.wait_finished(api, started)
        self.assertEqual(done["state"], "CANCELLED", done)
        self.assertEqual(self.participant.applications("/ok/deploy"), 1)
        self.assertEqual(self.participant.applications("/hold/undeploy"), 1)
        self.assertEqual(self.participant.count("/ok/after"), 0)
        transactions = api.get(f"/v1/{started['name']}/transactions")
        self.assertEqual([t["state"] for t in transactions.body["transactions"]], ["ABORTED"])

    def test_resumed_executions_keep_their_revision_even_when_deleted(self):
        def versioned(version):
            return ("main:\n  params: [args]\n  steps:\n    - call:\n        call: http.post\n"
                    "        args:\n          url: ${args.url + \"/hold/" + version + "\"}\n"
                    f"    - done:\n        return: {version}\n")

        server = self.start_server()
        api = server.client()
        self.deploy(api, "kept", versioned("v1"))
        old = self.run_execution(api, "kept", {"url": self.participant.url})
        self.assertTrue(self.participant.wait_for("/hold/v1"))
        patched = api.patch("/v1/workflows/kept", {"sourceContents": versioned("v2")})
        self.assertEqual(patched.status, 200, patched)
        new = self.run_execution(api, "kept", {"url": self.participant.url})
        self.assertTrue(self.participant.wait_for("/hold/v2"))
        self.assertEqual(api.delete("/v1/workflows/kept").status, 200)
        self.assertEqual(server.kill(), -signal.SIGKILL)
        self.participant.release()

        server.start()
        api = server.client()
        old_done, new_done = self.wait_finished(api, old), self.wait_finished(api, new)
        self.assertEqual((old_done["state"], json.loads(old_done.get("result", "null"))),
                         ("SUCCEEDED", "v1"), old_done)
        self.assertEqual((new_done["state"], json.loads(new_done.get("result", "null"))),
                         ("SUCCEEDED", "v2"), new_done)
        self.assertNotEqual(old_done["workflowRevisionId"], new_done["workflowRevisionId"])
        self.assertEqual(self.participant.applications("/hold/v1"), 1)
        self.assertEqual(self.participant.applications("/hold/v2"), 1)


if __name__ == "__main__":
    unittest.main()

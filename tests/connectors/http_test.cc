// Tests of http.* calls: argument mapping, reply mapping, and real requests to a loopback
// server through HttpClient on an IoLoop.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "connectors/http_call.h"
#include "connectors/http_client.h"
#include "engine/io_loop.h"
#include "lang/error.h"
#include "support/http_test_server.h"
#include "value/value.h"

namespace atomflow::connectors {
namespace {

using ::testing::HasSubstr;

// The request as the server saw it, as JSON: method, path, query, headers (lower-case
// names), body.
void Echo(const httplib::Request& request, httplib::Response& response) {
  Json seen = {{"method", request.method}, {"path", request.path}, {"body", request.body}};
  seen["query"] = Json::object();
  for (const auto& [name, value] : request.params) seen["query"][name] = value;
  seen["headers"] = Json::object();
  for (const auto& [name, value] : request.headers) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    seen["headers"][lower] = value;
  }
  response.set_content(seen.dump(), "application/json");
}

// A loop, a client on it and a server with the routes the tests use.
class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    httplib::Server& routes = server_.routes();
    routes.Get("/echo", Echo);
    routes.Post("/echo", Echo);
    routes.Put("/echo", Echo);
    routes.Delete("/echo", Echo);
    routes.Post("/json", [](const httplib::Request& request, httplib::Response& response) {
      response.set_content(request.body, "application/json; charset=utf-8");
    });
    routes.Get("/missing", [](const httplib::Request&, httplib::Response& response) {
      response.status = 404;
      response.set_content("no such model", "text/plain");
    });
    routes.Get("/slow",
               [release = release_slow_](const httplib::Request&, httplib::Response& response) {
                 release.wait_for(std::chrono::seconds(30));
                 response.set_content("too late", "text/plain");
               });
    routes.Get("/big", [](const httplib::Request& request, httplib::Response& response) {
      size_t size = std::stoul(request.get_param_value("size"));
      response.set_content(std::string(size, 'x'), "text/plain");
    });
    routes.Get("/big-chunked", [](const httplib::Request&, httplib::Response& response) {
      response.set_chunked_content_provider("text/plain",
                                            [](size_t offset, httplib::DataSink& sink) {
                                              if (offset > kMaxHttpResponseBytes) {
                                                sink.done();
                                                return true;
                                              }
                                              std::string chunk(64 * 1024, 'y');
                                              return sink.write(chunk.data(), chunk.size());
                                            });
    });
    server_.Start();
    loop_.Start();
  }

  void TearDown() override {
    release_slow_promise_.set_value();
    loop_.Stop();
  }

  // Runs one http.* call end to end and returns what the workflow would see.
  engine::EffectOutcome Call(std::string_view function, const Value& args) {
    Result<HttpRequest> request = BuildHttpRequest(function, args);
    EXPECT_TRUE(request.ok()) << request.message();
    if (!request.ok()) return engine::EffectOutcome::Failure(Value(request.message()));

    std::promise<HttpReply> reply;
    client_.Send(std::move(*request), [&reply](HttpReply r) { reply.set_value(std::move(r)); });
    return HttpOutcome(reply.get_future().get());
  }

  static const Value& Field(const engine::EffectOutcome& outcome, std::string_view key) {
    static const Value kNull;
    const Value* field = outcome.value.is_map() ? outcome.value.AsMap().Find(key) : nullptr;
    return field ? *field : kNull;
  }

  // Declared before the server, which joins its handlers when destroyed: /slow waits on it.
  std::promise<void> release_slow_promise_;
  std::shared_future<void> release_slow_ = release_slow_promise_.get_future().share();
  testing::HttpTestServer server_;
  engine::IoLoop loop_;
  HttpClient client_{&loop_};
};

TEST_F(HttpClientTest, GetSendsTheQueryUrlEncoded) {
  auto outcome = Call("http.get", Map{{"url", Value(server_.Url("/echo"))},
                                      {"query", Map{{"page", 2}, {"q", "a b&c"}}}});

  ASSERT_TRUE(outcome.ok) << DebugString(outcome.value);
  EXPECT_EQ(Field(outcome, "code"), Value(200));
  const Value& seen = Field(outcome, "body");
  ASSERT_TRUE(seen.is_map()) << DebugString(seen);
  EXPECT_EQ(*seen.AsMap().Find("method"), Value("GET"));
  EXPECT_EQ(*seen.AsMap().Find("query"), Value(Map{{"page", "2"}, {"q", "a b&c"}}));
}

TEST_F(HttpClientTest, PostJsonRoundTrip) {
  Value sent = Map{{"model", "resnet"}, {"epochs", 3}, {"tags", List{"a", "b"}}};
  auto outcome = Call("http.post", Map{{"url", Value(server_.Url("/json"))}, {"body", sent}});

  ASSERT_TRUE(outcome.ok) << DebugString(outcome.value);
  EXPECT_EQ(Field(outcome, "body"), sent);
  const Value& headers = Field(outcome, "headers");
  ASSERT_TRUE(headers.is_map());
  EXPECT_EQ(*headers.AsMap().Find("content-type"), Value("application/json; charset=utf-8"));
}

TEST_F(HttpClientTest, ServerSeesHeadersBodyAndContentType) {
  auto outcome =
      Call("http.put", Map{{"url", Value(server_.Url("/echo"))},
                           {"headers", Map{{"Idempotency-Key", "exec-1/step-4"}, {"X-Attempt", 2}}},
                           {"body", Map{{"k", "v"}}}});

  ASSERT_TRUE(outcome.ok) << DebugString(outcome.value);
  const Map& seen = Field(outcome, "body").AsMap();
  EXPECT_EQ(*seen.Find("method"), Value("PUT"));
  EXPECT_EQ(*seen.Find("body"), Value(R"({"k":"v"})"));
  const Map& headers = seen.Find("headers")->AsMap();
  EXPECT_EQ(*headers.Find("idempotency-key"), Value("exec-1/step-4"));
  EXPECT_EQ(*headers.Find("x-attempt"), Value("2"));
  EXPECT_EQ(*headers.Find("content-type"), Value("application/json"));
}

TEST_F(HttpClientTest, StringBodyIsSentAsIsWithTheGivenMethod) {
  auto outcome = Call("http.request", Map{{"url", Value(server_.Url("/echo"))},
                                          {"method", "delete"},
                                          {"headers", Map{{"Content-Type", "text/csv"}}},
                                          {"body", "a,b\n1,2\n"}});

  ASSERT_TRUE(outcome.ok) << DebugString(outcome.value);
  const Map& seen = Field(outcome, "body").AsMap();
  EXPECT_EQ(*seen.Find("method"), Value("DELETE"));
  EXPECT_EQ(*seen.Find("body"), Value("a,b\n1,2\n"));
  EXPECT_EQ(*seen.Find("headers")->AsMap().Find("content-type"), Value("text/csv"));
}

TEST_F(HttpClientTest, NotFoundRaisesHttpErrorWithCodeAndBody) {
  auto outcome = Call("http.get", Map{{"url", Value(server_.Url("/missing"))}});

  ASSERT_FALSE(outcome.ok);
  EXPECT_TRUE(lang::HasTag(outcome.value, "HttpError"));
  EXPECT_EQ(Field(outcome, "code"), Value(404));
  EXPECT_EQ(Field(outcome, "body"), Value("no such model"));
  EXPECT_EQ(Field(outcome, "message"), Value("HTTP server responded with error code 404"));
}

TEST_F(HttpClientTest, ClosedPortRaisesConnectionFailedError) {
  std::string url = "http://127.0.0.1:" + std::to_string(testing::ClosedLoopbackPort()) + "/x";
  auto outcome = Call("http.get", Map{{"url", Value(url)}});

  ASSERT_FALSE(outcome.ok);
  EXPECT_TRUE(lang::HasTag(outcome.value, "ConnectionFailedError")) << DebugString(outcome.value);
}

TEST_F(HttpClientTest, SlowServerRaisesTimeoutError) {
  auto outcome = Call("http.get", Map{{"url", Value(server_.Url("/slow"))}, {"timeout", 1}});

  ASSERT_FALSE(outcome.ok);
  EXPECT_TRUE(lang::HasTag(outcome.value, "TimeoutError")) << DebugString(outcome.value);
}

TEST_F(HttpClientTest, BodyOfExactlyTheLimitIsAccepted) {
  auto outcome = Call("http.get", Map{{"url", Value(server_.Url("/big"))},
                                      {"query", Map{{"size", int64_t{kMaxHttpResponseBytes}}}}});

  ASSERT_TRUE(outcome.ok) << DebugString(Field(outcome, "message"));
  EXPECT_EQ(Field(outcome, "body").AsString().size(), kMaxHttpResponseBytes);
}

TEST_F(HttpClientTest, OversizedBodyRaisesValueError) {
  for (std::string path : {"/big?size=2097153", "/big-chunked"}) {
    auto outcome = Call("http.get", Map{{"url", Value(server_.Url(path))}});

    ASSERT_FALSE(outcome.ok) << path;
    EXPECT_TRUE(lang::HasTag(outcome.value, "ValueError")) << path;
    EXPECT_EQ(Field(outcome, "message"),
              Value("HTTP response exceeded the limit of 2097152 bytes"));
  }
}

TEST_F(HttpClientTest, FiftyConcurrentRequestsCompleteOnOneLoop) {
  constexpr int kRequests = 50;
  std::vector<std::promise<HttpReply>> replies(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    Result<HttpRequest> request = BuildHttpRequest(
        "http.get", Map{{"url", Value(server_.Url("/echo"))}, {"query", Map{{"i", i}}}});
    ASSERT_TRUE(request.ok());
    client_.Send(std::move(*request), [&replies, i, this](HttpReply reply) {
      EXPECT_TRUE(loop_.InLoopThread());
      replies[i].set_value(std::move(reply));
    });
  }

  for (int i = 0; i < kRequests; ++i) {
    engine::EffectOutcome outcome = HttpOutcome(replies[i].get_future().get());
    ASSERT_TRUE(outcome.ok) << DebugString(outcome.value);
    const Value& query = *Field(outcome, "body").AsMap().Find("query");
    EXPECT_EQ(query, Value(Map{{"i", std::to_string(i)}}));
  }
}

TEST(BuildHttpRequestTest, MapsMethodUrlQueryHeadersAndTimeout) {
  Result<HttpRequest> request = BuildHttpRequest(
      "http.patch", Map{{"url", "https://api.example.com/items?x=1#top"},
                        {"query", Map{{"q", "a b"}, {"id", List{1, 2}}, {"ok", true}}},
                        {"headers", Map{{"X-Ratio", 0.5}}},
                        {"timeout", 60}});

  ASSERT_TRUE(request.ok()) << request.message();
  EXPECT_EQ(request->method, "PATCH");
  EXPECT_EQ(request->url, "https://api.example.com/items?x=1&q=a%20b&id=1&id=2&ok=true#top");
  EXPECT_EQ(request->headers,
            (std::vector<std::pair<std::string, std::string>>{{"X-Ratio", "0.5"}}));
  EXPECT_EQ(request->timeout_seconds, 60);
  EXPECT_EQ(request->body, "");
}

TEST(BuildHttpRequestTest, FormContentTypeEncodesAMapBodyAsAForm) {
  Result<HttpRequest> request = BuildHttpRequest(
      "http.post", Map{{"url", "http://h/"},
                       {"headers", Map{{"content-type", "application/x-www-form-urlencoded"}}},
                       {"body", Map{{"user", "ann lee"}, {"n", 3}}}});

  ASSERT_TRUE(request.ok()) << request.message();
  EXPECT_EQ(request->body, "user=ann%20lee&n=3");
  EXPECT_EQ(request->headers.size(), 1u);
}

TEST(BuildHttpRequestTest, ErrorsNameTheFunctionAndTheArgument) {
  auto error = [](std::string_view function, Value args) {
    Result<HttpRequest> request = BuildHttpRequest(function, args);
    return request.ok() ? std::string("ok") : request.message();
  };

  EXPECT_EQ(error("http.post", Map{{"url", 5}}), "http.post: 'url' must be a string, got integer");
  EXPECT_EQ(error("http.get", Map{}), "http.get: missing required argument 'url'");
  EXPECT_EQ(error("http.get", Value()), "http.get: missing required argument 'url'");
  EXPECT_EQ(error("http.request", Map{{"url", "http://h"}}),
            "http.request: missing required argument 'method'");
  EXPECT_EQ(error("http.get", Map{{"url", "http://h"}, {"method", "POST"}}),
            "http.get: unexpected argument 'method'");
  EXPECT_EQ(error("http.get", Map{{"url", "http://h"}, {"headers", List{}}}),
            "http.get: 'headers' must be a map, got list");
  EXPECT_EQ(error("http.get", Map{{"url", "http://h"}, {"headers", Map{{"A", List{}}}}}),
            "http.get: header 'A' must be a scalar, got list");
  EXPECT_THAT(error("http.get", Map{{"url", "http://h"}, {"timeout", 3600}}),
              HasSubstr("at most 1800 seconds"));
  EXPECT_THAT(error("http.get", Map{{"url", "http://h"}, {"auth", Map{{"type", "Basic"}}}}),
              HasSubstr("'auth.type'"));
  EXPECT_EQ(error("http.get", Map{{"url", "http://h"}, {"auth", Map{{"type", "OIDC"}}}}), "ok");
}

TEST(HttpOutcomeTest, LowerCasesHeadersAndDecodesOnlyJson) {
  HttpResponse json{200, {{"Content-Type", "application/problem+json"}, {"X-A", "1"}}, "[1,2]"};
  HttpResponse text{201, {{"Content-Type", "text/plain"}}, "[1,2]"};
  HttpResponse binary{200, {}, std::string("\xff\x00\x01", 3)};

  engine::EffectOutcome decoded = HttpOutcome(json);
  ASSERT_TRUE(decoded.ok);
  EXPECT_EQ(decoded.value,
            Value(Map{{"code", 200},
                      {"headers", Map{{"content-type", "application/problem+json"}, {"x-a", "1"}}},
                      {"body", List{1, 2}}}));
  EXPECT_EQ(*HttpOutcome(text).value.AsMap().Find("body"), Value("[1,2]"));
  EXPECT_EQ(*HttpOutcome(binary).value.AsMap().Find("body"),
            Value::Bytes(std::string("\xff\x00\x01", 3)));
}

TEST(HttpOutcomeTest, FailuresCarryTheLanguageTags) {
  auto tag_of = [](HttpFailureKind kind) {
    engine::EffectOutcome outcome = HttpOutcome(HttpFailure{kind, "GET http://h: broken"});
    EXPECT_FALSE(outcome.ok);
    return outcome.value.AsMap().Find("tags")->AsList().at(0).AsString();
  };

  EXPECT_EQ(tag_of(HttpFailureKind::kConnectionFailed), "ConnectionFailedError");
  EXPECT_EQ(tag_of(HttpFailureKind::kConnection), "ConnectionError");
  EXPECT_EQ(tag_of(HttpFailureKind::kTimeout), "TimeoutError");
  EXPECT_EQ(tag_of(HttpFailureKind::kTooLarge), "ValueError");
}

TEST(HttpHostMapTest, ParsesEntriesWithEitherSeparator) {
  Result<HttpHostMap> map =
      ParseHttpHostMap(" timeapi.io=http://127.0.0.1:81/ , * -> http://127.0.0.1:82 ");
  ASSERT_TRUE(map.ok()) << map.message();
  EXPECT_EQ(*map,
            (HttpHostMap{{"timeapi.io", "http://127.0.0.1:81"}, {"*", "http://127.0.0.1:82"}}));
  EXPECT_TRUE(ParseHttpHostMap("").ok());
  EXPECT_FALSE(ParseHttpHostMap("timeapi.io").ok());
  EXPECT_FALSE(ParseHttpHostMap("timeapi.io=127.0.0.1:81").ok());
}

TEST(HttpHostMapTest, RewritesSchemeHostAndPortKeepingPathAndHost) {
  HttpHostMap map = {{"timeapi.io", "http://127.0.0.1:81"}};
  std::optional<RoutedUrl> routed =
      RouteUrl(map, "https://timeapi.io/api/Time/current/zone?timeZone=Europe/Amsterdam");
  ASSERT_TRUE(routed.has_value());
  EXPECT_EQ(routed->url, "http://127.0.0.1:81/api/Time/current/zone?timeZone=Europe/Amsterdam");
  EXPECT_EQ(routed->host_header, "timeapi.io");

  routed = RouteUrl(map, "http://user@timeapi.io:8443");
  ASSERT_TRUE(routed.has_value());
  EXPECT_EQ(routed->url, "http://127.0.0.1:81");
  EXPECT_EQ(routed->host_header, "timeapi.io:8443");
  EXPECT_FALSE(RouteUrl(map, "https://en.wikipedia.org/w/api.php").has_value());
  EXPECT_FALSE(RouteUrl({}, "https://timeapi.io/").has_value());
}

TEST(HttpHostMapTest, StarRoutesEveryOtherHost) {
  HttpHostMap map = {{"*", "http://127.0.0.1:82"}, {"example.com", "http://127.0.0.1:83"}};
  EXPECT_EQ(RouteUrl(map, "https://example.com/a")->url, "http://127.0.0.1:83/a");
  EXPECT_EQ(RouteUrl(map, "https://www.example.com/a?b=c")->url, "http://127.0.0.1:82/a?b=c");
}

}  // namespace
}  // namespace atomflow::connectors

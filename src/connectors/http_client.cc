// The HTTP client: libcurl's multi-socket API with the IoLoop as its event source.
#include "connectors/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cmath>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace atomflow::connectors {

namespace {

// One request in flight. Heap-allocated and never moved, because libcurl keeps pointers to
// its body, error buffer and itself (CURLOPT_PRIVATE) until the transfer ends.
struct Transfer {
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  HttpRequest request;
  std::string wire_url;  // request.url, or where the host map routes it
  HttpResponse response;
  bool too_large = false;
  std::function<void(HttpReply)> done;
  char error[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    curl_slist_free_all(header_list);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

std::string_view Trim(std::string_view text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  size_t bytes = size * count;
  if (transfer->response.body.size() + bytes > kMaxHttpResponseBytes) {
    transfer->too_large = true;
    return 0;  // anything but `bytes` aborts the transfer
  }
  transfer->response.body.append(data, bytes);
  return bytes;
}

// Called once per header line. A status line starts a new response (after a 100 Continue),
// so it drops the headers collected so far.
size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  size_t bytes = size * count;
  std::string_view line(data, bytes);
  if (line.starts_with("HTTP/")) {
    transfer->response.headers.clear();
    return bytes;
  }

  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return bytes;  // the blank line ending the headers
  transfer->response.headers.emplace_back(std::string(Trim(line.substr(0, colon))),
                                          std::string(Trim(line.substr(colon + 1))));
  return bytes;
}

bool HasHeader(const HttpRequest& request, std::string_view name) {
  return std::any_of(request.headers.begin(), request.headers.end(),
                     [name](const auto& header) { return EqualsIgnoreCase(header.first, name); });
}

// The request headers as libcurl wants them. A header with an empty value must be written
// "Name;" (plain "Name:" tells libcurl to remove the header). libcurl's own defaults that the
// workflow did not ask for are suppressed: "Expect: 100-continue" costs a round trip, and
// its form Content-Type would mislabel a body the workflow sent without a type.
curl_slist* BuildHeaderList(const HttpRequest& request) {
  curl_slist* list = nullptr;
  for (const auto& [name, value] : request.headers) {
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    list = curl_slist_append(list, line.c_str());
  }
  if (!HasHeader(request, "Expect")) list = curl_slist_append(list, "Expect:");
  if (!HasHeader(request, "Content-Type")) list = curl_slist_append(list, "Content-Type:");
  return list;
}

void SetMethodAndBody(Transfer& transfer) {
  CURL* easy = transfer.easy;
  const HttpRequest& request = transfer.request;
  if (request.method == "GET" && request.body.empty()) {
    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    return;
  }
  if (request.method == "HEAD") {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    return;
  }

  curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  bool sends_body = !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
                    request.method == "PATCH";
  if (sends_body) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.data());
  }
}

void ConfigureEasy(Transfer& transfer) {
  CURL* easy = transfer.easy;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, &transfer);
  curl_easy_setopt(easy, CURLOPT_URL, transfer.wire_url.c_str());
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error);
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");

  long timeout_ms = std::max(1L, std::lround(transfer.request.timeout_seconds * 1000));
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kMaxHttpResponseBytes));

  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);

  transfer.header_list = BuildHeaderList(transfer.request);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer.header_list);
  SetMethodAndBody(transfer);
}

// The URL without its query and fragment, for messages: query strings often carry API keys.
std::string_view UrlForMessages(std::string_view url) {
  return url.substr(0, url.find_first_of("?#"));
}

HttpFailureKind FailureKind(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return HttpFailureKind::kTimeout;
    case CURLE_FILESIZE_EXCEEDED:
      return HttpFailureKind::kTooLarge;
    // Failures before the request left: retrying cannot apply it twice.
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
      return HttpFailureKind::kConnectionFailed;
    default:
      return HttpFailureKind::kConnection;
  }
}

HttpReply FinishedReply(Transfer& transfer, CURLcode code) {
  if (transfer.too_large || code == CURLE_FILESIZE_EXCEEDED) {
    return HttpFailure{
        HttpFailureKind::kTooLarge,
        "HTTP response exceeded the limit of " + std::to_string(kMaxHttpResponseBytes) + " bytes"};
  }
  if (code == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(transfer.easy, CURLINFO_RESPONSE_CODE, &status);
    transfer.response.code = static_cast<int>(status);
    return std::move(transfer.response);
  }

  std::string detail = transfer.error[0] != '\0' ? transfer.error : curl_easy_strerror(code);
  std::string message = transfer.request.method + " " +
                        std::string(UrlForMessages(transfer.request.url)) + ": " + detail;
  return HttpFailure{FailureKind(code), std::move(message)};
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The authority of an absolute URL: where it starts and how long it is (npos when the URL has
// no "scheme://").
std::pair<size_t, size_t> AuthorityOf(const std::string& url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return {std::string::npos, 0};
  size_t begin = scheme_end + 3;
  size_t end = std::min(url.find_first_of("/?#", begin), url.size());
  return {begin, end - begin};
}

// An authority without its user info: host and port, as a Host header carries them.
std::string_view HostAndPort(std::string_view authority) {
  size_t at = authority.find('@');
  return at == std::string_view::npos ? authority : authority.substr(at + 1);
}

// The host of an authority: without user info and port ("[::1]" keeps its brackets).
std::string HostOf(std::string_view authority) {
  authority = HostAndPort(authority);
  if (authority.starts_with("[")) return std::string(authority.substr(0, authority.find(']') + 1));
  return std::string(authority.substr(0, authority.find(':')));
}

}  // namespace

Result<HttpHostMap> ParseHttpHostMap(std::string_view text) {
  HttpHostMap host_map;
  while (!text.empty()) {
    size_t comma = std::min(text.find(','), text.size());
    std::string_view item = Trim(text.substr(0, comma));
    text.remove_prefix(std::min(comma + 1, text.size()));
    if (item.empty()) continue;

    size_t arrow = item.find("->");
    size_t equals = item.find('=');
    size_t split = arrow != std::string_view::npos ? arrow : equals;
    size_t skip = arrow != std::string_view::npos ? 2 : 1;
    std::string_view host = Trim(item.substr(0, split));
    std::string_view base = split == std::string_view::npos ? "" : Trim(item.substr(split + skip));
    if (host.empty() || base.find("://") == std::string_view::npos) {
      return Status::Error("bad host map entry \"" + std::string(item) +
                           "\": expected host=http://address:port");
    }
    while (base.ends_with("/")) base.remove_suffix(1);
    host_map[std::string(host)] = std::string(base);
  }
  return host_map;
}

std::optional<RoutedUrl> RouteUrl(const HttpHostMap& host_map, const std::string& url) {
  if (host_map.empty()) return std::nullopt;
  auto [begin, length] = AuthorityOf(url);
  if (begin == std::string::npos) return std::nullopt;
  std::string authority = url.substr(begin, length);
  auto target = host_map.find(HostOf(authority));
  if (target == host_map.end()) target = host_map.find("*");
  if (target == host_map.end()) return std::nullopt;
  return RoutedUrl{target->second + url.substr(begin + length),
                   std::string(HostAndPort(authority))};
}

// The multi handle and its transfers. Lives on the loop thread: every method runs there
// (or while the loop is stopped, for Shutdown). Fd and timer callbacks hold a raw pointer,
// which Shutdown makes safe by unwatching and cancelling them all.
struct HttpClient::Core {
  engine::IoLoop* loop = nullptr;
  HttpHostMap host_map;
  CURLM* multi = nullptr;
  std::optional<engine::IoLoop::TimerId> timer;
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> transfers;
  std::unordered_set<int> watched_sockets;

  void Begin(HttpRequest request, std::function<void(HttpReply)> done);
  void Act(curl_socket_t socket, int flags);
  void CompleteFinished();
  void Shutdown();

  static int OnSocket(CURL* easy, curl_socket_t socket, int what, void* user, void* socket_user);
  static int OnTimer(CURLM* multi, long timeout_ms, void* user);
};

void HttpClient::Core::Begin(HttpRequest request, std::function<void(HttpReply)> done) {
  auto transfer = std::make_unique<Transfer>();
  transfer->wire_url = request.url;
  if (std::optional<RoutedUrl> routed = RouteUrl(host_map, request.url)) {
    transfer->wire_url = std::move(routed->url);
    if (!HasHeader(request, "Host")) request.headers.emplace_back("Host", routed->host_header);
  }
  transfer->request = std::move(request);
  transfer->done = std::move(done);
  transfer->easy = curl_easy_init();
  ConfigureEasy(*transfer);

  CURL* easy = transfer->easy;
  transfers.emplace(easy, std::move(transfer));
  // Adding the handle arms the timer; the transfer starts when it fires.
  curl_multi_add_handle(multi, easy);
}

void HttpClient::Core::Act(curl_socket_t socket, int flags) {
  int running = 0;
  curl_multi_socket_action(multi, socket, flags, &running);
  CompleteFinished();
}

// Detaches every finished transfer first and calls the done callbacks last, so a callback
// that sends another request never re-enters libcurl while it reports results.
void HttpClient::Core::CompleteFinished() {
  std::vector<std::pair<std::function<void(HttpReply)>, HttpReply>> completed;
  int queued = 0;
  while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
    if (message->msg != CURLMSG_DONE) continue;
    auto it = transfers.find(message->easy_handle);
    assert(it != transfers.end());
    std::unique_ptr<Transfer> transfer = std::move(it->second);
    transfers.erase(it);

    HttpReply reply = FinishedReply(*transfer, message->data.result);
    curl_multi_remove_handle(multi, transfer->easy);
    completed.emplace_back(std::move(transfer->done), std::move(reply));
  }
  for (auto& [done, reply] : completed) done(std::move(reply));
}

void HttpClient::Core::Shutdown() {
  for (auto& [easy, transfer] : transfers) curl_multi_remove_handle(multi, easy);
  transfers.clear();
  curl_multi_cleanup(multi);
  multi = nullptr;

  if (timer) loop->CancelTimer(*timer);
  for (int socket : watched_sockets) loop->UnwatchFd(socket);
  watched_sockets.clear();
}

int HttpClient::Core::OnSocket(CURL*, curl_socket_t socket, int what, void* user, void*) {
  auto* core = static_cast<Core*>(user);
  if (what == CURL_POLL_REMOVE) {
    core->loop->UnwatchFd(socket);
    core->watched_sockets.erase(socket);
    return 0;
  }

  uint32_t events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= engine::IoLoop::kReadable;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= engine::IoLoop::kWritable;
  core->loop->WatchFd(socket, events, [core, socket](uint32_t ready) {
    int flags = 0;
    if (ready & engine::IoLoop::kReadable) flags |= CURL_CSELECT_IN;
    if (ready & engine::IoLoop::kWritable) flags |= CURL_CSELECT_OUT;
    core->Act(socket, flags);
  });
  core->watched_sockets.insert(socket);
  return 0;
}

// libcurl asks for one timer at a time: -1 removes it, any other value replaces it.
int HttpClient::Core::OnTimer(CURLM*, long timeout_ms, void* user) {
  auto* core = static_cast<Core*>(user);
  if (core->timer) core->loop->CancelTimer(*core->timer);
  core->timer.reset();
  if (timeout_ms < 0) return 0;

  core->timer = core->loop->AddTimer(std::chrono::milliseconds(timeout_ms), [core] {
    core->timer.reset();
    core->Act(CURL_SOCKET_TIMEOUT, 0);
  });
  return 0;
}

HttpClient::HttpClient(engine::IoLoop* loop, HttpHostMap host_map)
    : core_(std::make_shared<Core>()) {
  InitCurlOnce();
  core_->loop = loop;
  core_->host_map = std::move(host_map);
  core_->multi = curl_multi_init();
  curl_multi_setopt(core_->multi, CURLMOPT_SOCKETFUNCTION, &Core::OnSocket);
  curl_multi_setopt(core_->multi, CURLMOPT_SOCKETDATA, core_.get());
  curl_multi_setopt(core_->multi, CURLMOPT_TIMERFUNCTION, &Core::OnTimer);
  curl_multi_setopt(core_->multi, CURLMOPT_TIMERDATA, core_.get());
}

HttpClient::~HttpClient() { core_->Shutdown(); }

// The task holds the core weakly: a request posted just before the client was destroyed on
// the loop thread is dropped instead of touching a destroyed multi handle.
void HttpClient::Send(HttpRequest request, std::function<void(HttpReply)> done) {
  std::weak_ptr<Core> weak_core = core_;
  core_->loop->Post([weak_core, request = std::move(request), done = std::move(done)]() mutable {
    if (auto core = weak_core.lock()) core->Begin(std::move(request), std::move(done));
  });
}

}  // namespace atomflow::connectors

// The dashboard: GET /dashboard serves one self-contained HTML page (inline CSS and script,
// no external resources) that polls the JSON routes every 2 s and shows what the KV cache
// does; GET / redirects to it. The page is src/kvault/server/dashboard_page.html, embedded
// at build time by CMake as kDashboardPage.
//
// The page itself is public (static HTML, no data); its script sends the API key the user
// types in on every fetch, so the data stays behind the key like every other route.
#include "kvault/server/dashboard_page.h"
#include "kvault/server/http_route.h"
#include "kvault/server/routes.h"

namespace kvault::server {
namespace {

// The page may load nothing from elsewhere and talk only to this server; inline script and
// style are the whole page, so they are allowed.
constexpr char kContentSecurityPolicy[] =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

}  // namespace

void AddDashboardRoutes(httplib::Server& http, ServerState& state) {
  AddRoute(http, state, "GET", "/dashboard", "dashboard", RouteAuth::kPublic,
           [](RouteContext& context) {
             httplib::Response& response = context.response;
             response.set_header("Content-Security-Policy", kContentSecurityPolicy);
             response.set_header("X-Content-Type-Options", "nosniff");
             response.set_header("Cache-Control", "no-cache");
             response.set_content(kDashboardPage, sizeof(kDashboardPage) - 1,
                                  "text/html; charset=utf-8");
           });
  AddRoute(http, state, "GET", "/", "dashboard_redirect", RouteAuth::kPublic,
           [](RouteContext& context) { context.response.set_redirect("/dashboard", 302); });
}

}  // namespace kvault::server

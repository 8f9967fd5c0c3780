// Every Status code and every ErrorDetail, mapped to its HTTP status, OpenAI type and code.
#include "kvault/server/http_errors.h"

#include <gtest/gtest.h>

namespace kvault::server {
namespace {

struct CodeRow {
  StatusCode code;
  int status;
  const char* type;
  const char* error_code;
};

TEST(HttpErrorsTest, EveryStatusCodeHasItsHttpStatusTypeAndCode) {
  const CodeRow rows[] = {
      {StatusCode::kInvalidArgument, 400, "invalid_request_error", "invalid_request"},
      {StatusCode::kNotFound, 404, "not_found_error", "not_found"},
      {StatusCode::kAlreadyExists, 409, "invalid_request_error", "conflict"},
      {StatusCode::kResourceExhausted, 503, "server_error", "resource_exhausted"},
      {StatusCode::kUnavailable, 503, "server_error", "unavailable"},
      {StatusCode::kFailedPrecondition, 409, "invalid_request_error", "conflict"},
      {StatusCode::kCorruption, 500, "server_error", "internal_error"},
      {StatusCode::kIOError, 500, "server_error", "internal_error"},
      {StatusCode::kCancelled, 499, "invalid_request_error", "cancelled"},
      {StatusCode::kUnauthenticated, 401, "authentication_error", "invalid_api_key"},
      {StatusCode::kInternal, 500, "server_error", "internal_error"},
  };
  for (const CodeRow& row : rows) {
    const HttpError error = ToHttpError(Status(row.code, "what happened"));
    EXPECT_EQ(error.status, row.status) << StatusCodeName(row.code);
    EXPECT_EQ(error.type, row.type) << StatusCodeName(row.code);
    EXPECT_EQ(error.code, row.error_code) << StatusCodeName(row.code);
    EXPECT_EQ(error.message, "what happened");
  }
}

struct DetailRow {
  Status status;
  int http_status;
  const char* error_code;
};

TEST(HttpErrorsTest, EveryErrorDetailBecomesTheOpenAiCode) {
  const DetailRow rows[] = {
      {InvalidArgumentError("m").WithDetail(ErrorDetail::kContextLengthExceeded), 400,
       "context_length_exceeded"},
      {ResourceExhaustedError("m").WithDetail(ErrorDetail::kServerOverloaded), 503,
       "server_overloaded"},
      {UnavailableError("m").WithDetail(ErrorDetail::kShuttingDown), 503, "shutting_down"},
      {FailedPreconditionError("m").WithDetail(ErrorDetail::kPinsExhausted), 409, "pins_exhausted"},
      {FailedPreconditionError("m").WithDetail(ErrorDetail::kConversationBusy), 409,
       "conversation_busy"},
      {NotFoundError("m").WithDetail(ErrorDetail::kConversationNotFound), 404,
       "conversation_not_found"},
      {NotFoundError("m").WithDetail(ErrorDetail::kSessionNotFound), 404, "session_not_found"},
      {UnauthenticatedError("m").WithDetail(ErrorDetail::kInvalidApiKey), 401, "invalid_api_key"},
      {InvalidArgumentError("m").WithDetail(ErrorDetail::kInvalidGrammar), 400, "invalid_grammar"},
      {ResourceExhaustedError("m").WithDetail(ErrorDetail::kInsufficientStorage), 507,
       "insufficient_storage"},
      {UnavailableError("m").WithDetail(ErrorDetail::kUpstreamUnavailable), 502,
       "upstream_unavailable"},
      {UnavailableError("m").WithDetail(ErrorDetail::kUpstreamTimeout), 504, "upstream_timeout"},
  };
  // One row per detail: a new detail without a row fails here.
  EXPECT_EQ(std::size(rows), static_cast<size_t>(kLastErrorDetail));
  for (const DetailRow& row : rows) {
    const HttpError error = ToHttpError(row.status);
    EXPECT_EQ(error.status, row.http_status) << row.error_code;
    EXPECT_EQ(error.code, row.error_code);
    EXPECT_EQ(ErrorDetailName(row.status.detail()), row.error_code);
  }
}

TEST(HttpErrorsTest, DetailsSurviveWithPrefixAndTheMessageCarriesNoCode) {
  const Status status = InvalidArgumentError("too long")
                            .WithDetail(ErrorDetail::kContextLengthExceeded)
                            .WithPrefix("request");
  EXPECT_EQ(status.detail(), ErrorDetail::kContextLengthExceeded);
  EXPECT_EQ(ToHttpError(status).message, "request: too long");
  EXPECT_EQ(ErrorJson(ToHttpError(status))["error"]["code"], "context_length_exceeded");
}

}  // namespace
}  // namespace kvault::server

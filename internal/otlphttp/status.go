package otlphttp

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// format is the OTLP/HTTP payload encoding of a request and its response.
type format int

const (
	formatProto format = iota // application/x-protobuf
	formatJSON                // application/json
)

const (
	contentTypeProto = "application/x-protobuf"
	contentTypeJSON  = "application/json"
)

func (f format) contentType() string {
	if f == formatJSON {
		return contentTypeJSON
	}
	return contentTypeProto
}

// gRPC status codes carried in google.rpc.Status.code. The OTLP/HTTP
// specification does not use them (clients go by the HTTP status), they are
// set for troubleshooting.
const (
	codeInvalidArgument = 3
	codeNotFound        = 5
	codeUnimplemented   = 12
	codeInternal        = 13
	codeUnavailable     = 14
)

func grpcCode(httpStatus int) int32 {
	switch httpStatus {
	case http.StatusNotFound:
		return codeNotFound
	case http.StatusMethodNotAllowed:
		return codeUnimplemented
	case http.StatusServiceUnavailable:
		return codeUnavailable
	case http.StatusInternalServerError:
		return codeInternal
	}
	return codeInvalidArgument
}

// writeStatus answers a failed request as the OTLP/HTTP specification asks:
// the HTTP status and a google.rpc.Status body in the request's encoding.
// retryAfter > 0 sets Retry-After (whole seconds, at least 1).
func writeStatus(w http.ResponseWriter, f format, httpStatus int, msg string, retryAfter time.Duration) int {
	h := w.Header()
	h.Set("Content-Type", f.contentType())
	h.Set("X-Content-Type-Options", "nosniff")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(max(1, int(retryAfter/time.Second))))
	}
	body := marshalStatus(f, grpcCode(httpStatus), msg)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
	return httpStatus
}

// marshalStatus encodes google.rpc.Status{code, message} (details are not
// set). Both encodings are written by hand: the two fields do not justify a
// dependency on the generated googleapis types.
func marshalStatus(f format, code int32, msg string) []byte {
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	if f == formatJSON {
		b, _ := json.Marshal(struct {
			Code    int32  `json:"code,omitempty"`
			Message string `json:"message,omitempty"`
		}{code, msg})
		return b
	}
	// message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
	b := make([]byte, 0, 2*binary.MaxVarintLen64+2+len(msg))
	if code != 0 {
		b = append(b, 0x08) // field 1, wire type 0 (varint)
		b = binary.AppendUvarint(b, uint64(code))
	}
	if msg != "" {
		b = append(b, 0x12) // field 2, wire type 2 (length-delimited)
		b = binary.AppendUvarint(b, uint64(len(msg)))
		b = append(b, msg...)
	}
	return b
}

// writeResponse answers 200 with an ExportTraceServiceResponse whose
// partial_success is set if rejectedSpans > 0 (the OTLP/HTTP specification
// wants it unset on full success).
func writeResponse(w http.ResponseWriter, f format, rejectedSpans int64, errorMessage string) int {
	body := marshalResponse(f, rejectedSpans, errorMessage)
	h := w.Header()
	h.Set("Content-Type", f.contentType())
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return http.StatusOK
}

// marshalResponse encodes an ExportTraceServiceResponse by hand, like
// marshalStatus: pdata's ptraceotlp would do it, but it pulls in gRPC, which
// this module does not depend on.
//
//	message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
//	message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }
func marshalResponse(f format, rejectedSpans int64, msg string) []byte {
	if rejectedSpans <= 0 {
		if f == formatJSON {
			return []byte("{}")
		}
		return []byte{}
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if f == formatJSON {
		// proto3 JSON: lowerCamelCase names, int64 as a decimal string.
		b, _ := json.Marshal(jsonResponse{jsonPartialSuccess{strconv.FormatInt(rejectedSpans, 10), msg}})
		return b
	}
	inner := make([]byte, 0, 2*binary.MaxVarintLen64+2+len(msg))
	inner = append(inner, 0x08) // rejected_spans: field 1, varint
	inner = binary.AppendUvarint(inner, uint64(rejectedSpans))
	if msg != "" {
		inner = append(inner, 0x12) // error_message: field 2, length-delimited
		inner = binary.AppendUvarint(inner, uint64(len(msg)))
		inner = append(inner, msg...)
	}
	b := make([]byte, 0, binary.MaxVarintLen64+1+len(inner))
	b = append(b, 0x0a) // partial_success: field 1, length-delimited
	b = binary.AppendUvarint(b, uint64(len(inner)))
	return append(b, inner...)
}

type jsonResponse struct {
	PartialSuccess jsonPartialSuccess `json:"partialSuccess"`
}

type jsonPartialSuccess struct {
	RejectedSpans string `json:"rejectedSpans"`
	ErrorMessage  string `json:"errorMessage,omitempty"`
}

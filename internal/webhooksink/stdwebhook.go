// Package webhooksink is the receiving side of agentaudit's webhooks and the
// one place that implements the Standard Webhooks signature scheme
// (https://www.standardwebhooks.com): the sender (internal/detect/notify)
// signs with Sign, a receiver verifies with Verifier or mounts Sink, an
// http.Handler that verifies, deduplicates retries by webhook-id, logs each
// revocation and counts.
//
// The scheme: secrets are "whsec_" + base64(key); a message carries the
// headers webhook-id (stable across retries: the idempotency key),
// webhook-timestamp (unix seconds of the attempt) and webhook-signature, a
// space-separated list of "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>",
// one per secret the sender holds, so a receiver that knows any one of them
// accepts the message while secrets are rotated.
package webhooksink

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks spec.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every secret.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a message's timestamp may be from the
// receiver's clock (the spec's recommended 5 minutes), against replays.
const DefaultTolerance = 5 * time.Minute

// Verification errors; match with errors.Is.
var (
	ErrSecret           = errors.New("invalid webhook secret")
	ErrMissingHeaders   = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrTimestamp        = errors.New("webhook-timestamp outside tolerance")
	ErrNoValidSignature = errors.New("no valid webhook signature")
)

// ParseSecret decodes "whsec_<base64>" into the HMAC key. The prefix is
// optional on input (some tools strip it); the key must be 24..64 bytes
// as the spec asks.
func ParseSecret(s string) ([]byte, error) {
	b64 := strings.TrimPrefix(strings.TrimSpace(s), SecretPrefix)
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64 after %q", ErrSecret, SecretPrefix)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("%w: key is %d bytes, want 24..64", ErrSecret, len(key))
	}
	return key, nil
}

// FormatSecret renders a key as "whsec_<base64>".
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// NewSecret returns a fresh random secret ("whsec_" + 32 random bytes),
// e.g. for the all-in-one demo where sender and sink share one.
func NewSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand.Read crashes the program instead)
	return FormatSecret(key)
}

// Sign returns "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
func Sign(key []byte, id string, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SetHeaders sets the three Standard Webhooks headers on h, with one
// signature per key (the first key is the current one; the others are kept
// during a rotation).
func SetHeaders(h http.Header, keys [][]byte, id string, ts time.Time, body []byte) {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, ts, body)
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, " "))
}

// Verifier checks Standard Webhooks signatures against several secrets.
type Verifier struct {
	keys      [][]byte
	tolerance time.Duration
	now       func() time.Time
}

// NewVerifier accepts messages signed with any of secrets ("whsec_…") whose
// timestamp is within tolerance (DefaultTolerance if 0) of now.
func NewVerifier(secrets []string, tolerance time.Duration) (*Verifier, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("%w: at least one secret is required", ErrSecret)
	}
	v := &Verifier{tolerance: tolerance, now: time.Now}
	if v.tolerance <= 0 {
		v.tolerance = DefaultTolerance
	}
	for i, s := range secrets {
		k, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i, err)
		}
		v.keys = append(v.keys, k)
	}
	return v, nil
}

// Verify checks the headers against body and returns the message id and
// timestamp. Signatures of other versions than v1 are ignored.
func (v *Verifier) Verify(h http.Header, body []byte) (string, time.Time, error) {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return "", time.Time{}, ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %q is not unix seconds", ErrTimestamp, tsText)
	}
	ts := time.Unix(sec, 0)
	if d := v.now().Sub(ts); d > v.tolerance || d < -v.tolerance {
		return "", time.Time{}, fmt.Errorf("%w: %s off", ErrTimestamp, d.Round(time.Second))
	}
	for _, k := range v.keys {
		want := Sign(k, id, ts, body)
		for sig := range strings.FieldsSeq(sigs) {
			if hmac.Equal([]byte(sig), []byte(want)) {
				return id, ts, nil
			}
		}
	}
	return "", time.Time{}, ErrNoValidSignature
}

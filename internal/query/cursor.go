package query

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Cursor is a keyset position: the sort key of the last row a client got.
// Pages are ordered newest first by (TS, Kind, ID), and the next page is
// everything strictly below the cursor, so rows that arrive while a client
// pages — newer ones above page 1, or late ones anywhere — never shift the
// positions of rows already served: no row is served twice and none present
// when paging started is skipped.
type Cursor struct {
	TS   time.Time
	Kind string // timeline only: "event" or "span"
	ID   string
}

// cursorSigner makes cursors opaque and tamper-evident: base64url(JSON) "."
// base64url(HMAC-SHA256[:16]). The MAC also covers a hash of the request's
// filters, so a cursor cannot be replayed against other filters (or another
// tenant) to skip the keyset condition's assumptions.
type cursorSigner struct {
	key []byte
}

func newCursorSigner(key string) (*cursorSigner, error) {
	if key != "" {
		return &cursorSigner{key: []byte(key)}, nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("cursor key: %w", err)
	}
	return &cursorSigner{key: k}, nil
}

type cursorBody struct {
	T int64  `json:"t"`
	K string `json:"k,omitempty"`
	I string `json:"i"`
	F string `json:"f"`
}

var b64 = base64.RawURLEncoding

func (s *cursorSigner) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(payload)
	return m.Sum(nil)[:16]
}

// Encode returns the opaque cursor for c under filters (the filter hash).
func (s *cursorSigner) Encode(c Cursor, filters string) string {
	payload, _ := json.Marshal(cursorBody{T: c.TS.UnixNano(), K: c.Kind, I: c.ID, F: filters})
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(s.mac(payload))
}

// Decode checks the MAC and that the cursor was made for filters.
func (s *cursorSigner) Decode(tok, filters string) (Cursor, error) {
	p, m, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 1024 {
		return Cursor{}, errBadCursor
	}
	payload, err1 := b64.DecodeString(p)
	mac, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(payload)) {
		return Cursor{}, errBadCursor
	}
	var b cursorBody
	if err := json.Unmarshal(payload, &b); err != nil || b.F != filters {
		return Cursor{}, errBadCursor
	}
	return Cursor{TS: time.Unix(0, b.T).UTC(), Kind: b.K, ID: b.I}, nil
}

package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "svc-auditor", "iss": "https://idp.example", "aud": "agentaudit",
		"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix(),
		"role": "auditor", "tenants": []string{"acme", "globex"},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func jwks(t *testing.T, rsaKey *rsa.PublicKey, ecKey *ecdsa.PublicKey) []byte {
	t.Helper()
	b64 := base64.RawURLEncoding
	ecb, err := ecKey.Bytes() // uncompressed point 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]any{"keys": []any{
		map[string]any{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64.EncodeToString(rsaKey.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(rsaKey.E)).Bytes())},
		map[string]any{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64.EncodeToString(ecb[1:33]), "y": b64.EncodeToString(ecb[33:])},
		map[string]any{"kty": "oct", "kid": "ignored", "k": "c2VjcmV0"},
	}}
	b, _ := json.Marshal(set)
	return b
}

func sign(t *testing.T, m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTVerification(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	dir := t.TempDir()
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, jwks(t, &rk.PublicKey, &ek.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	hmacKey := []byte("0123456789abcdef0123456789abcdef")
	v, err := NewJWTVerifier(context.Background(), JWTConfig{
		HMACSecret: hmacKey, JWKSFile: file, Issuer: "https://idp.example", Audience: "agentaudit", Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"HS256", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(nil)), true},
		{"RS256", sign(t, jwt.SigningMethodRS256, "r1", rk, claims(nil)), true},
		{"ES256", sign(t, jwt.SigningMethodES256, "e1", ek, claims(nil)), true},
		{"RS256 unknown kid", sign(t, jwt.SigningMethodRS256, "nope", rk, claims(nil)), false},
		{"RS256 wrong key", sign(t, jwt.SigningMethodRS256, "r1", other, claims(nil)), false},
		{"ES256 token on RSA kid", sign(t, jwt.SigningMethodES256, "r1", ek, claims(nil)), false},
		{"HS512 not allowed", sign(t, jwt.SigningMethodHS512, "", hmacKey, claims(nil)), false},
		{"HS256 wrong secret", sign(t, jwt.SigningMethodHS256, "", []byte("wrong-wrong-wrong-wrong-wrong-wr"), claims(nil)), false},
		{"none alg", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}(), false},
		{"expired", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), false},
		{"no exp", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { delete(c, "exp") })), false},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), false},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), false},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["aud"] = "other" })), false},
		{"no sub", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { delete(c, "sub") })), false},
		{"bad role", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["role"] = "root" })), false},
		{"auditor with *", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["tenants"] = []string{"*"} })), false},
		{"no tenants", sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { delete(c, "tenants") })), false},
	} {
		p, err := v.Verify(context.Background(), tc.token)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && (err == nil || !errors.Is(err, ErrInvalidToken)) {
			t.Errorf("%s: accepted (%+v)", tc.name, p)
		}
		if tc.ok && (p.Name != "svc-auditor" || p.Role != RoleAuditor || !p.MayRead("acme") || !p.MayRead("globex") || p.MayRead("initech") || p.Method != "jwt") {
			t.Errorf("%s: principal %+v", tc.name, p)
		}
	}
	// Admin with the * grant; tenants as a space-separated string.
	p, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["role"], c["tenants"] = "admin", "*" })))
	if err != nil || !p.All || !p.MayRead("anything") {
		t.Errorf("admin *: %+v %v", p, err)
	}
	p, err = v.Verify(context.Background(), sign(t, jwt.SigningMethodHS256, "", hmacKey, claims(func(c jwt.MapClaims) { c["tenants"] = "acme globex" })))
	if err != nil || len(p.Tenants) != 2 {
		t.Errorf("string tenants: %+v %v", p, err)
	}
}

func TestJWKSURLIsCachedAndRefreshedOnUnknownKid(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	var current atomic.Pointer[[]byte]
	set1 := jwks(t, &rk.PublicKey, &k1.PublicKey)
	current.Store(&set1)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Write(*current.Load())
	}))
	defer srv.Close()
	clock := now
	v, err := NewJWTVerifier(context.Background(), JWTConfig{JWKSURL: srv.URL, JWKSRefresh: time.Hour, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, "e1", k1, claims(nil))); err != nil {
			t.Fatal(err)
		}
	}
	if fetches.Load() != 1 {
		t.Errorf("%d fetches for 5 tokens, want 1 (cached)", fetches.Load())
	}
	// Rotation: the IdP now signs with k2 under kid e1... under a new kid.
	b64 := base64.RawURLEncoding
	eb, _ := k2.PublicKey.Bytes()
	set2, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{"kty": "EC", "kid": "e2", "crv": "P-256", "x": b64.EncodeToString(eb[1:33]), "y": b64.EncodeToString(eb[33:])}}})
	current.Store(&set2)
	if _, err := v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, "e2", k2, claims(nil))); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	// Unknown kids do not hammer the IdP: one forced refresh a minute.
	n := fetches.Load()
	for range 5 {
		v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, "zzz", k2, claims(nil)))
	}
	if fetches.Load() != n {
		t.Errorf("%d fetches for unknown kids within a minute", fetches.Load()-n)
	}
	clock = clock.Add(2 * time.Hour) // past JWKSRefresh: re-read
	v.Verify(context.Background(), sign(t, jwt.SigningMethodES256, "e2", k2, claims(func(c jwt.MapClaims) { c["exp"] = clock.Add(time.Hour).Unix() })))
	if fetches.Load() != n+1 {
		t.Errorf("no refresh after JWKSRefresh")
	}
}

func TestKeyStore(t *testing.T) {
	good := "- name: ci\n  key_sha256: " + HashKey("s3cret") + "\n  role: auditor\n  tenants: [acme]\n"
	es, err := ParseKeys([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewKeyStore(es)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := ks.Lookup("s3cret"); !ok || p.Name != "ci" || !p.MayRead("acme") || p.MayRead("other") {
		t.Errorf("lookup: %+v %v", p, ok)
	}
	if _, ok := ks.Lookup("S3cret"); ok {
		t.Error("wrong key accepted")
	}
	for name, y := range map[string]string{
		"auditor *":  "- {name: a, key_sha256: " + HashKey("x") + ", role: auditor, tenants: ['*']}",
		"short hash": "- {name: a, key_sha256: abcd, role: auditor, tenants: [t]}",
		"no tenants": "- {name: a, key_sha256: " + HashKey("x") + ", role: auditor}",
		"bad role":   "- {name: a, key_sha256: " + HashKey("x") + ", role: owner, tenants: [t]}",
		"dup name":   "- {name: a, key_sha256: " + HashKey("x") + ", role: auditor, tenants: [t]}\n- {name: a, key_sha256: " + HashKey("y") + ", role: auditor, tenants: [t]}",
		"dup key":    "- {name: a, key_sha256: " + HashKey("x") + ", role: auditor, tenants: [t]}\n- {name: b, key_sha256: " + HashKey("x") + ", role: auditor, tenants: [t]}",
	} {
		es, err := ParseKeys([]byte(y))
		if err == nil {
			_, err = NewKeyStore(es)
		}
		if !errors.Is(err, ErrBadKeyFile) {
			t.Errorf("%s: %v, want ErrBadKeyFile", name, err)
		}
	}
}

func TestAuthenticatorHeaders(t *testing.T) {
	es, _ := ParseKeys([]byte("- {name: k, key_sha256: " + HashKey("key1") + ", role: admin, tenants: ['*']}"))
	ks, _ := NewKeyStore(es)
	a := &Authenticator{Keys: ks}
	for hdr, want := range map[[2]string]error{
		{"X-API-Key", "key1"}:             nil,
		{"Authorization", "Bearer key1"}:  nil,
		{"Authorization", "bearer key1"}:  nil,
		{"Authorization", "Basic key1"}:   ErrBadCredentials,
		{"Authorization", "Bearer a.b.c"}: ErrBadCredentials, // a JWT, none configured
		{"X-API-Key", "nope"}:             ErrBadCredentials,
		{"", ""}:                          ErrNoCredentials,
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if hdr[0] != "" {
			r.Header.Set(hdr[0], hdr[1])
		}
		p, err := a.Authenticate(context.Background(), r)
		if !errors.Is(err, want) || (want == nil && (!p.All || p.Method != "api_key")) {
			t.Errorf("%v: %+v %v, want %v", hdr, p, err, want)
		}
	}
}

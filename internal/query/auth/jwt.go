package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTConfig says which tokens are accepted.
type JWTConfig struct {
	HMACSecret   []byte        // HS256 key; nil disables HS256
	JWKSFile     string        // RS256/ES256 public keys as a JWK Set file
	JWKSURL      string        // or fetched from this URL
	JWKSRefresh  time.Duration // how often the JWKS is re-read (file or URL)
	Issuer       string        // required iss; "" accepts any
	Audience     string        // required aud; "" accepts any
	Leeway       time.Duration // clock skew allowed on exp and nbf
	RoleClaim    string        // claim holding "auditor" or "admin"
	TenantsClaim string        // claim holding the tenant list (array or space-separated string)
	HTTPClient   *http.Client  // for JWKSURL; nil: a client with a 10 s timeout
	Now          func() time.Time
}

// Enabled reports whether any JWT key source is configured.
func (c JWTConfig) Enabled() bool {
	return len(c.HMACSecret) > 0 || c.JWKSFile != "" || c.JWKSURL != ""
}

// ErrInvalidToken wraps every reason a bearer token is rejected; the reason
// itself is for logs, clients get a generic message.
var ErrInvalidToken = errors.New("invalid token")

// JWTVerifier checks JWTs and maps their claims to principals.
type JWTVerifier struct {
	cfg     JWTConfig
	methods []string
	parser  *jwt.Parser

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey // by kid
	loadedAt  time.Time
	lastForce time.Time
}

// NewJWTVerifier builds a verifier and loads the JWKS once, so a bad file or
// URL fails at start.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.JWKSRefresh <= 0 {
		cfg.JWKSRefresh = 5 * time.Minute
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "role"
	}
	if cfg.TenantsClaim == "" {
		cfg.TenantsClaim = "tenants"
	}
	v := &JWTVerifier{cfg: cfg}
	if len(cfg.HMACSecret) > 0 {
		v.methods = append(v.methods, "HS256")
	}
	if cfg.JWKSFile != "" || cfg.JWKSURL != "" {
		v.methods = append(v.methods, "RS256", "ES256")
		if err := v.reload(ctx); err != nil {
			return nil, err
		}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Verify checks signature, exp, nbf, iss and aud and returns the principal
// named by the claims (sub, role claim, tenants claim).
func (v *JWTVerifier) Verify(ctx context.Context, token string) (Principal, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case "HS256":
			return v.cfg.HMACSecret, nil
		case "RS256", "ES256":
			kid, _ := t.Header["kid"].(string)
			return v.key(ctx, kid, t.Method.Alg())
		}
		return nil, fmt.Errorf("unexpected alg %q", t.Method.Alg())
	})
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return Principal{}, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	role, _ := claims[v.cfg.RoleClaim].(string)
	var tenants []string
	switch ts := claims[v.cfg.TenantsClaim].(type) {
	case []any:
		for _, t := range ts {
			s, ok := t.(string)
			if !ok {
				return Principal{}, fmt.Errorf("%w: %s claim holds a non-string", ErrInvalidToken, v.cfg.TenantsClaim)
			}
			tenants = append(tenants, s)
		}
	case string:
		tenants = splitFields(ts)
	}
	p, err := NewPrincipal(sub, "jwt", Role(role), tenants)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return p, nil
}

func splitFields(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' || s[i] == ',' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// key returns the JWKS key kid for alg. The set is re-read when older than
// JWKSRefresh, and at most once a minute when a token names an unknown kid
// (key rotation), so unknown kids cannot be used to hammer the JWKS URL.
func (v *JWTVerifier) key(ctx context.Context, kid, alg string) (any, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.cfg.Now()
	if now.Sub(v.loadedAt) > v.cfg.JWKSRefresh {
		if err := v.reloadLocked(ctx); err != nil {
			return nil, err
		}
	}
	k, ok := v.keys[kid]
	if !ok && now.Sub(v.lastForce) > time.Minute {
		v.lastForce = now
		if err := v.reloadLocked(ctx); err != nil {
			return nil, err
		}
		k, ok = v.keys[kid]
	}
	if !ok {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	switch k.(type) {
	case *rsa.PublicKey:
		if alg != "RS256" {
			return nil, fmt.Errorf("kid %q is an RSA key, token says %s", kid, alg)
		}
	case *ecdsa.PublicKey:
		if alg != "ES256" {
			return nil, fmt.Errorf("kid %q is an EC key, token says %s", kid, alg)
		}
	}
	return k, nil
}

func (v *JWTVerifier) reload(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.reloadLocked(ctx)
}

func (v *JWTVerifier) reloadLocked(ctx context.Context) error {
	var data []byte
	var err error
	if v.cfg.JWKSFile != "" {
		data, err = os.ReadFile(v.cfg.JWKSFile)
		if err != nil {
			return fmt.Errorf("read jwks file: %w", err)
		}
	} else {
		data, err = fetchJWKS(ctx, v.cfg.HTTPClient, v.cfg.JWKSURL)
		if err != nil {
			return err
		}
	}
	keys, err := ParseJWKS(data)
	if err != nil {
		return err
	}
	v.keys = keys
	v.loadedAt = v.cfg.Now()
	return nil
}

func fetchJWKS(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read jwks: %w", err)
	}
	return b, nil
}

// ParseJWKS parses a JWK Set (RFC 7517) of RSA and P-256 EC public keys;
// keys of other types, or with "use" other than "sig", are skipped.
func ParseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	b64 := base64.RawURLEncoding
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Kty {
		case "RSA":
			n, err1 := b64.DecodeString(k.N)
			e, err2 := b64.DecodeString(k.E)
			if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
				return nil, fmt.Errorf("parse jwks: kid %q: bad RSA key", k.Kid)
			}
			keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			if k.Crv != "P-256" {
				continue
			}
			x, err1 := b64.DecodeString(k.X)
			y, err2 := b64.DecodeString(k.Y)
			if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("parse jwks: kid %q: bad EC key", k.Kid)
			}
			// Uncompressed point encoding; ParseUncompressedPublicKey checks
			// that the point is on the curve.
			pt := append([]byte{4}, append(x, y...)...)
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
			if err != nil {
				return nil, fmt.Errorf("parse jwks: kid %q: %w", k.Kid, err)
			}
			keys[k.Kid] = pub
		}
	}
	return keys, nil
}

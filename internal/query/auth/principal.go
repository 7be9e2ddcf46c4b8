// Package auth turns the credentials of a query API request — an API key or
// a JWT bearer token — into a Principal: who is asking, with which role, on
// behalf of which tenants. It never sees SQL: the query service turns the
// principal's tenants into the bound tenant filter of every statement.
package auth

import (
	"errors"
	"fmt"
	"slices"
)

// Role of a principal.
type Role string

// Roles. An auditor reads the data of its tenants; an admin also reads the
// query audit trail, and only an admin may hold the "*" (all tenants) grant.
const (
	RoleAuditor Role = "auditor"
	RoleAdmin   Role = "admin"
)

// AllTenants is the grant of every tenant, admins only.
const AllTenants = "*"

// Errors of principal validation.
var (
	ErrInvalidRole     = errors.New("role must be auditor or admin")
	ErrNoTenants       = errors.New("principal has no tenants")
	ErrWildcardAuditor = errors.New(`the "*" tenant grant is for admins only`)
	ErrBadTenant       = errors.New("invalid tenant id")
)

// Principal is an authenticated caller.
type Principal struct {
	Name   string // key name or JWT subject; appears in query_audit, never a secret
	Method string // "api_key" or "jwt"
	Role   Role
	// Tenants the principal may read, sorted and unique; nil when All.
	Tenants []string
	All     bool // the "*" grant (admins only)
}

// MaxTenantIDLen bounds a tenant id in a grant or a request.
const MaxTenantIDLen = 256

// NewPrincipal validates a role and a tenant grant and returns the principal.
func NewPrincipal(name, method string, role Role, tenants []string) (Principal, error) {
	p := Principal{Name: name, Method: method, Role: role}
	if role != RoleAuditor && role != RoleAdmin {
		return p, fmt.Errorf("%w: %q", ErrInvalidRole, role)
	}
	for _, t := range tenants {
		switch {
		case t == AllTenants:
			if role != RoleAdmin {
				return p, ErrWildcardAuditor
			}
			p.All = true
		case t == "" || len(t) > MaxTenantIDLen:
			return p, fmt.Errorf("%w: %q", ErrBadTenant, t)
		default:
			p.Tenants = append(p.Tenants, t)
		}
	}
	if p.All {
		p.Tenants = nil
		return p, nil
	}
	if len(p.Tenants) == 0 {
		return p, ErrNoTenants
	}
	slices.Sort(p.Tenants)
	p.Tenants = slices.Compact(p.Tenants)
	return p, nil
}

// MayRead reports whether the principal may read tenant.
func (p Principal) MayRead(tenant string) bool {
	if p.All {
		return true
	}
	_, ok := slices.BinarySearch(p.Tenants, tenant)
	return ok
}

// IsAdmin reports whether the principal has the admin role.
func (p Principal) IsAdmin() bool { return p.Role == RoleAdmin }

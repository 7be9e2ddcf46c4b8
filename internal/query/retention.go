package query

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/agentaudit/agentaudit/internal/retention"
)

// RetentionStatus is the retention state the caller may see.
//
// A principal bound to tenants (or naming tenants) gets Classes: one row per
// tenant and data class with that tenant's rows per volume, its ages under
// the policy in force and whether a legal hold covers it, plus the tenant's
// active holds. The policy text itself is not returned to them: its
// per-tenant overrides name other tenants.
//
// A principal granted every tenant who names none gets Database instead:
// the whole database per table and volume, the policy in force and every
// active hold (no per-tenant split, which would mean listing all tenants).
type RetentionStatus struct {
	At            time.Time                     `json:"at"`
	PolicyApplied bool                          `json:"policy_applied"`
	Classes       []retention.TenantClassStatus `json:"classes"`
	Holds         []retention.Hold              `json:"holds"`
	Database      *retention.Status             `json:"database,omitempty"`
}

// RetentionStatus reads the retention state within the scope.
func (s *Service) RetentionStatus(ctx context.Context, sc Scope) (*RetentionStatus, error) {
	m, err := retention.New(s.conn, retention.Options{Database: s.db})
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx(ctx, s.queryTimeout, nil)
	defer cancel()
	if sc.all {
		st, err := m.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("retention status: %w", err)
		}
		holds := st.Holds
		if holds == nil {
			holds = []retention.Hold{}
		}
		return &RetentionStatus{At: st.At, PolicyApplied: st.PolicyApplied, Classes: []retention.TenantClassStatus{}, Holds: holds, Database: st}, nil
	}
	if len(sc.tenants) == 0 {
		return nil, errEmptyScope
	}
	rep, err := m.TenantStatus(ctx, sc.tenants)
	if err != nil {
		return nil, fmt.Errorf("retention status: %w", err)
	}
	return &RetentionStatus{At: rep.At, PolicyApplied: rep.PolicyApplied, Classes: rep.Classes, Holds: rep.Holds}, nil
}

func (s *Server) retentionStatus(c *gin.Context, rc *reqCtx) error {
	st, err := s.svc.RetentionStatus(c.Request.Context(), rc.scope)
	if err != nil {
		return err
	}
	rc.rows = uint64(len(st.Classes))
	c.JSON(http.StatusOK, st)
	return nil
}

package deploycheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Datasource is a panel's or target's data source reference.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Dashboard is what the checks need of a Grafana dashboard JSON file.
type Dashboard struct {
	File      string
	UID       string
	Title     string
	Variables []Variable
	Queries   []Query
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string
	Type       string // query, custom, constant, …
	Datasource Datasource
	Query      string // SQL of a query variable; comma-separated values of a custom one
	Multi      bool
	IncludeAll bool
}

// Query is one target of one panel.
type Query struct {
	Panel      string
	RefID      string
	Datasource Datasource
	// Format is the ClickHouse plugin's queryType (table, timeseries, …).
	Format string
	SQL    string // ClickHouse targets
	Expr   string // Prometheus targets
}

// Name identifies the query in messages: "panel title/A".
func (q Query) Name() string { return q.Panel + "/" + q.RefID }

type rawDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource *Datasource     `json:"datasource"`
			Query      json.RawMessage `json:"query"`
			Multi      bool            `json:"multi"`
			IncludeAll bool            `json:"includeAll"`
		} `json:"list"`
	} `json:"templating"`
	Panels []rawPanel `json:"panels"`
}

type rawPanel struct {
	Title      string      `json:"title"`
	Type       string      `json:"type"`
	Datasource *Datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Datasource *Datasource `json:"datasource"`
		QueryType  string      `json:"queryType"`
		RawSQL     string      `json:"rawSql"`
		Expr       string      `json:"expr"`
	} `json:"targets"`
	Panels []rawPanel `json:"panels"` // a collapsed row's panels
}

// LoadDashboards reads every *.json file in dir, sorted by name.
func LoadDashboards(dir string) ([]Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Dashboard
	for _, f := range files {
		d, err := LoadDashboard(f)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// LoadDashboard reads one dashboard JSON file.
func LoadDashboard(file string) (Dashboard, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Dashboard{}, err
	}
	var raw rawDashboard
	if err := json.Unmarshal(b, &raw); err != nil {
		return Dashboard{}, fmt.Errorf("dashboard %s: %w", file, err)
	}
	d := Dashboard{File: file, UID: raw.UID, Title: raw.Title}
	for _, v := range raw.Templating.List {
		q, err := variableQuery(v.Query)
		if err != nil {
			return Dashboard{}, fmt.Errorf("dashboard %s: variable %s: %w", file, v.Name, err)
		}
		vv := Variable{Name: v.Name, Type: v.Type, Query: q, Multi: v.Multi, IncludeAll: v.IncludeAll}
		if v.Datasource != nil {
			vv.Datasource = *v.Datasource
		}
		d.Variables = append(d.Variables, vv)
	}
	var walk func(ps []rawPanel)
	walk = func(ps []rawPanel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, t := range p.Targets {
				q := Query{Panel: p.Title, RefID: t.RefID, Format: t.QueryType, SQL: t.RawSQL, Expr: t.Expr}
				switch {
				case t.Datasource != nil:
					q.Datasource = *t.Datasource
				case p.Datasource != nil:
					q.Datasource = *p.Datasource
				}
				d.Queries = append(d.Queries, q)
			}
		}
	}
	walk(raw.Panels)
	return d, nil
}

// variableQuery accepts the two shapes Grafana stores: a string, or an
// object with the query in "query" or "rawSql".
func variableQuery(m json.RawMessage) (string, error) {
	if len(m) == 0 || string(m) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(m, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query  string `json:"query"`
		RawSQL string `json:"rawSql"`
	}
	if err := json.Unmarshal(m, &o); err != nil {
		return "", err
	}
	if o.RawSQL != "" {
		return o.RawSQL, nil
	}
	return o.Query, nil
}

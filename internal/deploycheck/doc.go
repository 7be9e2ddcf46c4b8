// Package deploycheck keeps the deployment files honest: docker-compose.yml,
// the Dockerfile, the Prometheus alert rules and the Grafana dashboards are
// data that no compiler reads, so its tests check them against the code.
//
//   - docker-compose.yml: services, pinned images, ports, volumes, depends_on
//     conditions, and every AGENTAUDIT_* variable loaded and validated
//     through the service's real configuration (config.Load + Validate);
//     Prometheus targets, healthchecks and listen addresses agree; the
//     ClickHouse storage policy and the Collector's kafka exporter match
//     what the services expect.
//   - Dockerfile: every COPY source exists and is not excluded by
//     .dockerignore; the builder's Go is the one go.mod asks for.
//   - dashboards/: every ClickHouse query (panels and template variables),
//     with the Grafana macros and variables expanded as Grafana and the
//     ClickHouse plugin expand them, runs against the embedded ClickHouse
//     loaded with simulator traffic ingested through the real ingest
//     pipeline, and returns rows; every PromQL expression parses (promtool)
//     and names only metrics the code registers.
//   - deploy/prometheus: `promtool check rules`, `promtool test rules` and
//     `promtool check config`; promtool comes from scripts/fetch-promtool.sh.
//
// The non-test code is the reusable part: Grafana query expansion
// (Expand), dashboard query extraction (DashboardQueries), PromQL metric
// names (MetricNames) and the registration recorder (Recorder).
package deploycheck

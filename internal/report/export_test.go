package report

// HealthQuery is GetHealth's query, for the test that checks its plan.
const HealthQuery = healthQuery

"""Calendar reconcile: `plan` (pure: desired + status + remote listing to actions) and
`engine` (reads the server's view cheaply, guards, runs a plan)."""

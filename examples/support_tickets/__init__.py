"""The bundled example task: customer-support tickets answered with a compact JSON triage."""

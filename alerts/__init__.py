"""Alerts that reach people within seconds: rules over the stream's window aggregates, evaluated
by a faust worker (`callstream alert`), delivered to webhooks, Slack and e-mail, recorded in
Elasticsearch. See docs/alerts.md."""

"""Kibana for callstream: saved objects (data views, dashboard) and their provisioning."""

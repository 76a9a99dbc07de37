"""Kibana alerting rules for callstream (rules/*.json), installed by infra.kibana.provision."""

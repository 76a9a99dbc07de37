"""callstream: a Kafka stream pipeline for the cost, latency and failures of LLM API calls.

Data flows producers -> streams -> sinks; this package holds only what every stage shares:
connection settings, topic names and logging setup, plus the `callstream` command line.
"""

__version__ = "0.1.0"

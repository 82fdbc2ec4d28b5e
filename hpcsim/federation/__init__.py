"""The HELICS federation: brokers, federate configs, the federate loop and the local runner."""

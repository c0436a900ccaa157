"""The device side: TCP server for Spark Core/Photon devices (PROTOCOL.md)."""

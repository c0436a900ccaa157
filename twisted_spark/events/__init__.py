"""The event side of the cloud: the bus and its subscribers."""

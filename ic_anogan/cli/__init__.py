"""The installed commands: flags, then one job."""

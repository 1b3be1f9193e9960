"""Use cases that drive the domain core: replaying a history on a virtual clock."""

"""What the roles share and no role owns: the bridge's and the source machine's job and
answer formats, their HTTP clients, role checks on both ends, the shared file locks. A role
imports this, never another role."""

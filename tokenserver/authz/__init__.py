"""What an identity may do: the policy that filters requested scopes down to a grant."""

"""What both services stand on: the shared vocabulary and HTTP plumbing, importing neither."""

"""What the model costs, and the caps every call is reserved against."""

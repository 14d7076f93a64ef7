"""What only makes training faster, never different: hand-written passes and the C kernels they call."""

"""The networks, their losses, and the model directory."""

"""The scrum team as Claude tool-use loops: the loop, the model, the tools, roles, team and workflow."""

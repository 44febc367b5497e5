"""The three dealreg services; each is deployable on its own and imports only itself and shared."""

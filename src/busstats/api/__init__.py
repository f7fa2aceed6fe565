"""The HTTP edge: the Starlette app (`app`), its route table and one handler module per
resource (`routes/`), the parameter types and their decoder (`params`), the operations'
metadata (`operations`) from which `openapi` builds the document, the middleware, the error
handlers, and the dashboard and docs pages."""

"""The HTTP edge: the Starlette app (`app`), its route table and one handler module per
resource (`routes/`), the parameter types and their decoder (`params`), the operations'
metadata (`operations`) from which `openapi` builds the document, the middleware, the error
handlers (`errors`), the open service's parts for the handlers (`state`), the reading of an
upload's request (`uploads`), and the dashboard and docs pages."""

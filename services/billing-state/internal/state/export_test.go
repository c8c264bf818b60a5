package state

// LookupSQL is each lookup's statement, for the test that checks their plans.
var LookupSQL = map[string]string{"user_id": byUserIDSQL, "email": byEmailSQL}

%%% A stand-in for the `telemetry' library (not installable here: no hex): its presence
%%% in the test profile makes erlkaf emit events; a test that wants them registers its
%%% pid with `attach/1'. Every suite therefore also runs erlkaf's telemetry paths.
-module(telemetry).

-export([execute/3, attach/1, detach/0]).

execute(Event, Measurements, Metadata) ->
    case persistent_term:get({?MODULE, handler}, undefined) of
        undefined -> ok;
        Pid -> Pid ! {telemetry, Event, Measurements, Metadata}, ok
    end.

attach(Pid) -> persistent_term:put({?MODULE, handler}, Pid).

detach() -> _ = persistent_term:erase({?MODULE, handler}), ok.

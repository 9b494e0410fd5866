defmodule ErlkafTest do
  use ExUnit.Case, async: false
  doctest Erlkaf
  doctest Erlkaf.Message
  doctest Erlkaf.Mock
end
